"""One local two-node Ray cluster (head + worker node ``w1``, separate ``ray start`` processes) for
the whole session, and helpers to drive it the way a user does: commands run as subprocesses with
``--ray-address``, state read through Ray's state API.

This test process never calls ``ray.init``: it only starts the cluster's processes, talks to the
dashboard over HTTP (state API, job API) and runs commands, so it holds no Ray of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrosearch.local import ray_cluster
from tests.conftest import DATA  # noqa: F401  (re-exported for the tests here)
from tests.trainers.conftest import bert_tokenizer_dir, tiny_bert_encoder  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
# Not the script's default (27000): a developer's own cluster on this machine stays untouched.
BASE_PORT = int(os.environ.get("RETROSEARCH_TEST_RAY_BASE_PORT", "27100"))
WORKER = "w1"


@pytest.fixture(scope="session")
def cluster() -> Iterator[ray_cluster.ClusterSpec]:
    """A head (2 CPUs) and one worker node (2 CPUs), 200 MB object stores, dashboard on for the job
    and state APIs; stopped (exactly its own processes) at the end."""
    try:  # a cluster left by an interrupted run of these tests
        ray_cluster.stop(ray_cluster.ClusterSpec.load(BASE_PORT))
    except ray_cluster.ClusterError:
        pass
    started = time.perf_counter()
    spec = ray_cluster.start(BASE_PORT, workers=1, cpus=2, object_store_mb=200, dashboard=True)
    wait_for_nodes(spec, 2)
    print(f"\n[cluster] started in {time.perf_counter() - started:.1f} s at {spec.address}")
    yield spec
    ray_cluster.stop(spec)


def wait_for_nodes(spec: ray_cluster.ClusterSpec, alive: int, timeout_s: float = 60.0) -> dict[str, str]:
    """Wait until the cluster reports ``alive`` live nodes; returns node id -> node name."""
    from ray.util.state import list_nodes

    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            nodes = list_nodes(address=spec.dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
            if len(nodes) == alive:
                return {n.node_id: n.node_name for n in nodes}
            last = [n.node_name for n in nodes]
        except Exception as exc:  # the dashboard is still starting
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"expected {alive} live nodes within {timeout_s} s; last saw {last!r}")


def node_names(spec: ray_cluster.ClusterSpec) -> dict[str, str]:
    """Node id -> node name of every node the cluster has known (alive or dead)."""
    from ray.util.state import list_nodes

    return {n.node_id: n.node_name for n in list_nodes(address=spec.dashboard_url, raise_on_missing_output=False)}


def actor_nodes(spec: ray_cluster.ClusterSpec, class_name: str, state: str | None = "ALIVE") -> list[str]:
    """Names of the nodes the actors of ``class_name`` sit on (one entry per actor)."""
    from ray.util.state import list_actors

    filters = [("class_name", "=", class_name)] + ([("state", "=", state)] if state else [])
    actors = list_actors(address=spec.dashboard_url, filters=filters, limit=1000, raise_on_missing_output=False)
    names = node_names(spec)
    return [names.get(a.node_id, a.node_id) for a in actors]


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a command run against the cluster (no RAY_ADDRESS: commands name it)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra})
    return env


def start_command(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """Start ``retrosearch ARGS`` in the background, output to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "retrosearch.cli", *args], stdout=handle, stderr=subprocess.STDOUT,
        env=command_env(**env), cwd=REPO,
    )


def run_command(args: list[str], log: Path, timeout_s: float = 300, **env: str) -> int:
    """Run ``retrosearch ARGS`` to the end; returns its exit status (output in ``log``)."""
    proc = start_command(args, log, **env)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"retrosearch {' '.join(args)} ran past {timeout_s} s; log:\n{log.read_text()[-3000:]}")


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2) -> object:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def lose_worker_node(cluster: ray_cluster.ClusterSpec) -> Iterator[Callable[[], float]]:
    """A function that SIGKILLs node w1's raylet and returns when; w1 is started again afterwards
    (and before, if an earlier test left it down) so every test begins with two nodes."""
    if ray_cluster.raylet_pid(cluster, cluster.node(WORKER)) is None:
        ray_cluster.start_node(cluster, WORKER)
        wait_for_nodes(cluster, 2)

    def kill() -> float:
        ray_cluster.kill_node(cluster, WORKER)
        return time.monotonic()

    yield kill
    if ray_cluster.raylet_pid(cluster, cluster.node(WORKER)) is None:
        ray_cluster.start_node(cluster, WORKER)
        wait_for_nodes(cluster, 2)


def record_figure(name: str, value: object) -> None:
    """Print a measured figure (and keep it in $RETROSEARCH_CLUSTER_FIGURES, a JSON file, if set)."""
    print(f"[cluster figure] {name}: {value}")
    path = os.environ.get("RETROSEARCH_CLUSTER_FIGURES")
    if path:
        figures = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        figures[name] = value
        Path(path).write_text(json.dumps(figures, indent=2) + "\n")
