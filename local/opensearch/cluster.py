"""A local OpenSearch cluster like production: N nodes from one distribution, optionally secured.

Each node is an ordinary local node (:mod:`.server`) with its own config, data and logs under
``<cluster dir>/node-<port>``, HTTP on ``port + i`` and transport on ``port + TRANSPORT_OFFSET + i``
(fixed, so the nodes find each other and never take a transport port another local node chose
from OpenSearch's default range). With ``secure`` the security plugin runs with the project's
certificates, users and roles (:mod:`.security`), and readiness is polled over https with the
admin's credentials: the cluster is ready when it is green with all N nodes.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from retrosearch.core import process

from . import security, server
from .assembly import assemble, find_java_home, tool_env
from .node_config import ServerError, ServerSettings, prepare_node_dir, with_ml

SECURITY_PLUGIN = "opensearch-security"
# Transport ports sit this far above the HTTP ports, below OpenSearch's default range's busy start.
TRANSPORT_OFFSET = 100
CLUSTER_HEAP = "512m"
CLUSTER_ML_HEAP = "1g"


@dataclass
class ClusterSettings:
    """N nodes sharing ``base``'s version, plugins and cache; ``base.port`` is the first node's HTTP port."""

    base: ServerSettings
    nodes: int = 3
    secure: bool = False

    @property
    def with_ml(self) -> bool:
        return "opensearch-ml-plugin" in self.base.plugins

    @property
    def plugins(self) -> tuple[str, ...]:
        extra = (SECURITY_PLUGIN,) if self.secure and SECURITY_PLUGIN not in self.base.plugins else ()
        return self.base.plugins + extra

    @property
    def cluster_dir(self) -> Path:
        return (
            Path(self.base.run_dir)
            if self.base.run_dir
            else self.base.version_dir / "run" / f"cluster-{self.base.port}"
        )

    @property
    def ports(self) -> list[int]:
        return [self.base.port + i for i in range(self.nodes)]

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def urls(self) -> list[str]:
        return [f"{self.scheme}://{self.base.host}:{port}" for port in self.ports]

    @property
    def cluster_name(self) -> str:
        return f"{self.base.cluster_name}-{self.base.port}"

    def node_name(self, port: int) -> str:
        return f"{self.cluster_name}-{port}"

    def node(self, port: int) -> ServerSettings:
        """The settings of the node on HTTP ``port``."""
        names = [self.node_name(p) for p in self.ports]
        extra: dict[str, Any] = {
            "node.name": self.node_name(port),
            "discovery.type": None,
            "transport.port": port + TRANSPORT_OFFSET,
            "discovery.seed_hosts": [f"{self.base.host}:{p + TRANSPORT_OFFSET}" for p in self.ports],
            "cluster.initial_cluster_manager_nodes": names,
        }
        if self.secure:
            extra.update(security.node_security_settings(self.node_name(port)))
        return replace(
            self.base,
            port=port,
            plugins=self.plugins,
            cluster_name=self.cluster_name,
            run_dir=self.cluster_dir / f"node-{port}",
            extra={**extra, **self.base.extra},
        )


def cluster_settings(base: ServerSettings, nodes: int, secure: bool, heap_given: bool) -> ClusterSettings:
    """A cluster of ``nodes`` nodes like ``base``, with a smaller default heap per node than a lone node's."""
    if nodes < 1:
        raise ServerError(f"--nodes must be at least 1, got {nodes}")
    cluster = ClusterSettings(base=base, nodes=nodes, secure=secure)
    if not heap_given:
        cluster.base = replace(base, heap=CLUSTER_ML_HEAP if cluster.with_ml else CLUSTER_HEAP)
    return cluster


# -- talking to the cluster over https with credentials ------------------------------------------
def admin_request(
    cluster: ClusterSettings, path: str, timeout: float = 10.0, method: str = "GET", payload: Any = None
) -> tuple[int, Any]:
    """``method path`` (with ``payload`` as its JSON body) on the first node answering, as admin when
    secured: (status, JSON); 0: none answers."""
    headers: dict[str, str] = {}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    if cluster.secure:
        try:
            password = security.password_file(cluster.cluster_dir, "admin").read_text().strip()
        except OSError:  # never started: nothing to ask
            return 0, None
        headers["Authorization"] = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
        context = ssl.create_default_context(cafile=str(security.ca_file(cluster.cluster_dir)))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    status = 0
    body: Any = None
    for url in cluster.urls:
        try:
            with opener.open(
                urllib.request.Request(url + path, data=data, headers=headers, method=method), timeout=timeout
            ) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except (urllib.error.URLError, OSError, ValueError):
            continue
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def running(base: ServerSettings, nodes: int, secure: bool) -> ClusterSettings:
    """The cluster of ``nodes`` nodes from ``base.port`` on, described with the plugins it runs: with the
    ML plugins when its nodes have them (started with ``--with-ml``), so a node restarted through these
    settings comes back as it was. Nothing answering: the settings of ``base`` as given."""
    group = cluster_settings(base, nodes, secure, heap_given=False)
    status, plugins = admin_request(group, "/_cat/plugins?format=json")
    listed = plugins if status == 200 and isinstance(plugins, list) else []
    components = {p.get("component") for p in listed}
    if {"opensearch-ml", "opensearch-neural-search"} <= components and not group.with_ml:
        group = cluster_settings(with_ml(base), nodes, secure, heap_given=False)
    return group


def _green(cluster: ClusterSettings) -> bool:
    status, health = admin_request(
        cluster,
        f"/_cluster/health?wait_for_status=green&wait_for_nodes={cluster.nodes}&timeout=1s",
        timeout=10,
    )
    return (
        status == 200
        and isinstance(health, dict)
        and health.get("status") == "green"
        and health.get("number_of_nodes") == cluster.nodes
    )


def wait_green(cluster: ClusterSettings, deadline: float, pids: dict[int, int] | None = None) -> None:
    """Poll until the cluster is green with all its nodes; a node that exits fails at once with its log."""
    while True:
        for port, pid in (pids or {}).items():
            if not process.pid_alive(pid):
                raise server.startup_error(cluster.node(port), "exited during start-up")
        if _green(cluster):
            return
        if time.monotonic() > deadline:
            health = admin_request(cluster, "/_cluster/health")
            raise server.startup_error(
                cluster.node(cluster.ports[0]),
                f"cluster was not green with {cluster.nodes} nodes in time ({health})",
            )
        time.sleep(1.0)


# -- start, stop, status ----------------------------------------------------------------------------
def _prepare_security(cluster: ClusterSettings, home: Path) -> dict[str, str]:
    """Certificates and passwords (made at the first start), and the users' yml files to install."""
    cluster.cluster_dir.mkdir(parents=True, exist_ok=True)
    security.ensure_certificates(
        cluster.cluster_dir, [cluster.node_name(p) for p in cluster.ports], cluster.base.host
    )
    passwords = security.ensure_passwords(cluster.cluster_dir)

    env = tool_env(home, find_java_home(cluster.base))
    hashes = security.cached_hashes(cluster.cluster_dir, home, env, passwords)
    return security.security_files(hashes, cluster.with_ml)


def start_node(cluster: ClusterSettings, port: int, home: Path, files: dict[str, str] | None = None) -> int:
    """Lay out and launch one node of the cluster (not waiting); return its pid."""
    node = cluster.node(port)
    node_dir = prepare_node_dir(node, home)
    if cluster.secure:
        config = node_dir / "config"
        security.install_node_certificates(cluster.cluster_dir, cluster.node_name(port), config)
        if files:
            security.install_security_files(config, files)
    return server.launch(node, home, node_dir)


def start(cluster: ClusterSettings, wait_s: float = 300.0) -> dict[str, Any]:
    """Start every node not running yet (assembling first if needed); wait for green with all nodes."""
    home = assemble(replace(cluster.base, plugins=cluster.plugins))
    files = _prepare_security(cluster, home) if cluster.secure else None
    pids = {}
    for port in cluster.ports:
        node = cluster.node(port)
        pid = server.read_pid(node)
        pids[port] = pid if pid is not None else start_node(cluster, port, home, files)
    try:
        wait_green(cluster, time.monotonic() + wait_s, pids)
        if files:
            update_roles(cluster, files)
    except ServerError:
        stop(cluster)
        raise
    return status(cluster)


def update_roles(cluster: ClusterSettings, files: dict[str, str]) -> None:
    """Put the project's roles and their mappings through the security REST API, as admin.

    The yml files load only when the security index is first created; a cluster first started
    without the ML plugins (or with older roles) gets today's at every start, users and passwords
    left as they are.
    """
    for kind, name in (("roles", "roles.yml"), ("rolesmapping", "roles_mapping.yml")):
        for role, body in json.loads(files[name]).items():
            if not role.startswith("retrosearch_"):
                continue  # _meta, and the built-in roles' mappings, stay as they are
            code, answer = admin_request(
                cluster, f"/_plugins/_security/api/{kind}/{role}", method="PUT", payload=body
            )
            if code not in (200, 201):
                raise ServerError(
                    f"updating {kind} {role!r} on {cluster.urls[0]} failed (HTTP {code}): {answer}"
                )


def restart_node(cluster: ClusterSettings, port: int) -> int:
    """Start the cluster's node on ``port`` again (after a crash or a stop), not waiting; return its pid.

    The users and roles live in the security index by then, so only the node's files are laid out anew.
    """
    pid = server.read_pid(cluster.node(port))
    if pid is not None:
        return pid
    return start_node(cluster, port, assemble(replace(cluster.base, plugins=cluster.plugins)))


def stop(cluster: ClusterSettings, grace_s: float = 30.0) -> list[int]:
    """Stop the cluster's nodes (SIGTERM, then SIGKILL after ``grace_s``); the ports of those that ran."""
    return [port for port in cluster.ports if server.stop(cluster.node(port), grace_s)]


def client_environment(cluster: ClusterSettings, user: str = "writer") -> dict[str, str]:
    """The environment variables that point the project's client at this cluster as ``user``."""
    env = {"RETROSEARCH_OPENSEARCH_URL": ",".join(cluster.urls)}
    if cluster.secure:
        env.update(
            RETROSEARCH_OPENSEARCH_USER=user,
            RETROSEARCH_OPENSEARCH_PASSWORD_FILE=str(security.password_file(cluster.cluster_dir, user)),
            RETROSEARCH_OPENSEARCH_CA_CERTS=str(security.ca_file(cluster.cluster_dir)),
        )
    return env


def status(cluster: ClusterSettings) -> dict[str, Any]:
    """Each node's pid, the cluster's health and, when secured, where the CA and the credentials are."""
    nodes = {}
    for port in cluster.ports:
        nodes[str(port)] = {
            "pid": server.read_pid(cluster.node(port)),
            "node_dir": str(cluster.node(port).node_dir),
        }
    code, health = admin_request(cluster, "/_cluster/health")
    info: dict[str, Any] = {
        "running": sum(1 for n in nodes.values() if n["pid"] is not None),
        "nodes": nodes,
        "urls": cluster.urls,
        "answering": code == 200,
        "health": health.get("status") if code == 200 and isinstance(health, dict) else None,
        "number_of_nodes": health.get("number_of_nodes")
        if code == 200 and isinstance(health, dict)
        else None,
        "secure": cluster.secure,
        "cluster_dir": str(cluster.cluster_dir),
    }
    if cluster.secure:
        info.update(
            ca_certs=str(security.ca_file(cluster.cluster_dir)),
            credentials_dir=str(security.credentials_dir(cluster.cluster_dir)),
            users=list(security.USERS),
            export={user: client_environment(cluster, user) for user in ("writer", "searcher")},
        )
    else:
        info["export"] = client_environment(cluster)
    return info
