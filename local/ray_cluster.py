"""A local multi-node Ray cluster: one head and worker nodes as separate ``ray start`` processes.

It is how the cluster paths of the project (``--ray-address``, ``ray job submit``, a lost node)
are exercised on one machine. Every node has its own temp dir, its own custom resource
(``rs_node_<name>``, so work can be placed on a chosen node), a small object store and explicit
ports, all derived from one base port, so it never meets an in-process ``ray.init()`` (Ray's
defaults: 6379, 8265, 10001, 52365, random others) or another cluster with another base port.

Ports of a cluster with base port ``B``::

    B      GCS (the address)           B+1  dashboard (job and state API)   B+2  Ray client server
    B+3    autoscaler metrics          B+4  dashboard metrics (both fixed defaults otherwise: 44217, 44227)
    B+10+10i .. B+15+10i               node i: node manager, object manager, metrics export,
                                       runtime-env agent, dashboard agent gRPC and HTTP
    B+100+100i .. B+199+100i           node i: worker processes

Everything a cluster owns lives under ``/tmp/rsc-<B>/`` (short: Ray's socket paths must stay under
the 107-byte limit of Unix sockets): ``cluster.json`` and one temp dir per node. ``stop`` ends
exactly the processes whose command line names one of those temp dirs or the cluster's GCS
address, their descendants, and workers whose raylet was one of ours, never another Ray on the
machine (``ray stop`` would end them all).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

DEFAULT_BASE_PORT = 27000
HEAD = "head"
RESOURCE_PREFIX = "rs_node_"
#: Of each node's block of ten ports: which Ray port sits at which offset.
_NODE_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "dashboard-agent-grpc-port",
    "dashboard-agent-listen-port",
)
_WORKER_PORTS = 100  # worker processes per node that can hold a port at once


class ClusterError(RuntimeError):
    """A cluster command could not do what it was asked; the message says why."""


@dataclass
class NodeSpec:
    """One node of the cluster as started: its name, index (port block), CPUs and temp dir."""

    name: str
    index: int
    cpus: int
    temp_dir: str

    @property
    def resource(self) -> str:
        """The custom resource only this node has (``{resource: 1}`` places a task or actor here)."""
        return f"{RESOURCE_PREFIX}{self.name}"


@dataclass
class ClusterSpec:
    """What ``start`` wrote to ``cluster.json``; everything the other commands need."""

    base_port: int
    root: str
    object_store_mb: int
    dashboard: bool
    nodes: list[NodeSpec] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The GCS address: ``ray.init(address=...)`` and ``--ray-address``."""
        return f"127.0.0.1:{self.base_port}"

    @property
    def dashboard_url(self) -> str:
        """The job and state API (``ray job submit --address``, ``ray.util.state``)."""
        return f"http://127.0.0.1:{self.base_port + 1}"

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"no node {name!r} in the cluster at {self.root} (nodes: {[n.name for n in self.nodes]})")

    def save(self) -> None:
        """Write ``cluster.json``."""
        path = Path(self.root) / "cluster.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, base_port: int = DEFAULT_BASE_PORT) -> "ClusterSpec":
        """The cluster started with ``base_port`` (ClusterError when none was)."""
        path = cluster_root(base_port) / "cluster.json"
        if not path.is_file():
            raise ClusterError(f"no cluster was started with base port {base_port} ({path} missing)")
        data = json.loads(path.read_text())
        data["nodes"] = [NodeSpec(**n) for n in data["nodes"]]
        return cls(**data)


def cluster_root(base_port: int) -> Path:
    """The folder of the cluster with ``base_port``."""
    return Path(f"/tmp/rsc-{base_port}")


def _ray_executable() -> str:
    # The ``ray`` script of this interpreter's environment (the one that has the project).
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def _node_args(spec: ClusterSpec, node: NodeSpec) -> list[str]:
    base = spec.base_port + 10 + 10 * node.index
    ports = [f"--{name}={base + offset}" for offset, name in enumerate(_NODE_PORTS)]
    workers = spec.base_port + 100 + _WORKER_PORTS * node.index
    return [
        *ports,
        f"--min-worker-port={workers}",
        f"--max-worker-port={workers + _WORKER_PORTS - 1}",
        f"--num-cpus={node.cpus}",
        "--num-gpus=0",
        f"--resources={json.dumps({node.resource: 1000})}",
        f"--object-store-memory={spec.object_store_mb << 20}",
        f"--temp-dir={node.temp_dir}",
        "--node-ip-address=127.0.0.1",
        f"--node-name={node.name}",
        "--disable-usage-stats",
    ]


def _ray_start(args: list[str], extra_env: dict[str, str] | None = None) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "RAY_USAGE_STATS_ENABLED": "0"}
    env.update(extra_env or {})
    # A RAY_ADDRESS of the caller would make ``ray start --head`` refuse or join the wrong cluster.
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([_ray_executable(), "start", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"ray start {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _start_node(spec: ClusterSpec, node: NodeSpec) -> None:
    Path(node.temp_dir).mkdir(parents=True, exist_ok=True)
    if node.name == HEAD:
        args = [
            "--head",
            f"--port={spec.base_port}",
            f"--ray-client-server-port={spec.base_port + 2}",
            f"--include-dashboard={'true' if spec.dashboard else 'false'}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={spec.base_port + 1}",
        ]
        # Two head processes bind fixed default ports that ``ray start`` has no flag for.
        env = {"AUTOSCALER_METRIC_PORT": str(spec.base_port + 3), "DASHBOARD_METRIC_PORT": str(spec.base_port + 4)}
    else:
        args, env = [f"--address={spec.address}"], {}
    _ray_start(args + _node_args(spec, node), env)
    raylet_pid(spec, node, wait_s=30)


def start(
    base_port: int = DEFAULT_BASE_PORT,
    workers: int = 1,
    cpus: int = 2,
    head_cpus: int | None = None,
    object_store_mb: int = 200,
    dashboard: bool = True,
) -> ClusterSpec:
    """Start a head and ``workers`` worker nodes (``w1``, ``w2``, ...); returns the cluster's spec.

    ``dashboard`` is on by default because Ray's job API (``ray job submit``) and state API
    (``ray.util.state``) are served by the head's dashboard process; off, the cluster is ~0.9 GiB
    lighter and runs drivers that connect with ``ray.init(address=...)`` only.
    """
    root = cluster_root(base_port)
    if (root / "cluster.json").exists() and own_processes(ClusterSpec.load(base_port)):
        raise ClusterError(f"a cluster with base port {base_port} already runs (stop it first)")
    nodes = [NodeSpec(HEAD, 0, head_cpus if head_cpus is not None else cpus, str(root / HEAD))]
    nodes += [NodeSpec(f"w{i}", i, cpus, str(root / f"w{i}")) for i in range(1, workers + 1)]
    spec = ClusterSpec(base_port, str(root), object_store_mb, dashboard, nodes)
    spec.save()
    try:
        for node in nodes:
            _start_node(spec, node)
    except Exception:
        stop(spec)
        raise
    return spec


def start_node(spec: ClusterSpec, name: str) -> int:
    """(Re)start worker node ``name`` (after :func:`kill_node`); returns its new raylet pid."""
    node = spec.node(name)
    if node.name == HEAD:
        raise ClusterError("the head cannot be restarted alone; stop and start the cluster")
    old = raylet_pid(spec, node)
    if old is not None:
        raise ClusterError(f"node {name} is running (raylet pid {old})")
    _start_node(spec, node)
    return raylet_pid(spec, node)


def _cmdline(proc: Any) -> str:
    try:
        return " ".join(proc.info["cmdline"] or [])
    except Exception:  # a process that ended while we looked
        return ""


def raylet_pid(spec: ClusterSpec, node: NodeSpec, wait_s: float = 0.0) -> int | None:
    """The pid of ``node``'s raylet (waiting up to ``wait_s`` for it to appear), or None."""
    deadline = time.monotonic() + wait_s
    marker = f"{node.temp_dir}/"
    while True:
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            line = _cmdline(proc)
            if (proc.info["cmdline"] or [""])[0].endswith("/raylet") and marker in line:
                return proc.info["pid"]
        if time.monotonic() >= deadline:
            if wait_s:
                raise ClusterError(f"node {node.name}'s raylet did not appear within {wait_s:g} s")
            return None
        time.sleep(0.2)


def own_processes(spec: ClusterSpec) -> list[int]:
    """Pids of every process of this cluster: those naming one of its temp dirs or its GCS
    address, their descendants, and workers whose raylet (``RAY_RAYLET_PID``) was one of its raylets."""
    markers = [f"{n.temp_dir}/" for n in spec.nodes] + [f"{n.temp_dir} " for n in spec.nodes]
    # The Ray client server names no temp dir, only the GCS address (host:B).
    gcs = re.compile(rf"--(gcs-)?address=\S+:{spec.base_port}(\s|$)")
    procs = list(psutil.process_iter(["pid", "ppid", "name", "cmdline"]))
    roots = {p.info["pid"] for p in procs if any(m in _cmdline(p) + " " for m in markers) or gcs.search(_cmdline(p))}
    raylets = {str(p.info["pid"]) for p in procs if p.info["pid"] in roots and (p.info["cmdline"] or [""])[0].endswith("/raylet")}
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.info["ppid"], []).append(p.info["pid"])
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid == os.getpid():
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    for p in procs:
        if p.info["pid"] in found or p.info["pid"] == os.getpid():
            continue
        try:
            owner = p.environ().get("RAY_RAYLET_PID")
        except Exception:
            continue
        if owner in raylets:
            found.add(p.info["pid"])
    return sorted(found)


def kill_node(spec: ClusterSpec, name: str) -> int:
    """SIGKILL worker node ``name``'s raylet (a lost machine, as Ray sees it); returns its pid.

    Its workers and agents notice their raylet is gone and exit on their own, as they would on a
    real machine that dropped off the network; :func:`stop` sweeps any that linger.
    """
    node = spec.node(name)
    if node.name == HEAD:
        raise ClusterError("kill a worker node, not the head (a lost head ends the cluster)")
    pid = raylet_pid(spec, node)
    if pid is None:
        raise ClusterError(f"node {name} has no running raylet")
    os.kill(pid, signal.SIGKILL)
    return pid


def stop(spec: ClusterSpec, grace_s: float = 5.0) -> list[int]:
    """End every process of this cluster (SIGTERM, then SIGKILL after ``grace_s``); returns their pids."""
    pids = own_processes(spec)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, alive = psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    # Workers started while we waited, or orphaned by a killed raylet.
    for pid in own_processes(spec):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def _process(pid: int) -> Any:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def status(spec: ClusterSpec) -> dict[str, Any]:
    """Address, dashboard and, per node, its raylet pid (None: down) and custom resource."""
    return {
        "address": spec.address,
        "dashboard": spec.dashboard_url if spec.dashboard else None,
        "processes": len(own_processes(spec)),
        "nodes": [
            {"name": n.name, "raylet_pid": raylet_pid(spec, n), "resource": n.resource, "cpus": n.cpus, "temp_dir": n.temp_dir}
            for n in spec.nodes
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """``scripts/ray-cluster.sh start|stop|status|kill-node|start-node``."""
    parser = argparse.ArgumentParser(prog="ray-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "kill-node", "start-node"])
    parser.add_argument("node", nargs="?", help="worker node name (kill-node, start-node), e.g. w1")
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("RETROSEARCH_RAY_BASE_PORT", DEFAULT_BASE_PORT)))
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs per node")
    parser.add_argument("--head-cpus", type=int, default=None, help="logical CPUs of the head (default --cpus)")
    parser.add_argument("--object-store-mb", type=int, default=200)
    parser.add_argument("--no-dashboard", action="store_true", help="no job or state API; ~0.9 GiB less memory")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            spec = start(args.base_port, args.workers, args.cpus, args.head_cpus, args.object_store_mb, not args.no_dashboard)
            print(json.dumps(status(spec), indent=2))
            print(f"export RAY_ADDRESS={spec.address}")
            if spec.dashboard:
                print(f"ray job submit --address {spec.dashboard_url} ...")
            return 0
        spec = ClusterSpec.load(args.base_port)
        if args.command == "stop":
            print(f"stopped {len(stop(spec))} processes")
        elif args.command == "status":
            info = status(spec)
            print(json.dumps(info, indent=2))
            return 0 if all(n["raylet_pid"] for n in info["nodes"]) else 1
        elif args.command in ("kill-node", "start-node"):
            if not args.node:
                parser.error(f"{args.command} needs a node name")
            if args.command == "kill-node":
                print(f"killed node {args.node} (raylet pid {kill_node(spec, args.node)})")
            else:
                print(f"started node {args.node} (raylet pid {start_node(spec, args.node)})")
        return 0
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
