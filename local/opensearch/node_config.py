"""How one local OpenSearch node is laid out and configured: its settings, opensearch.yml and jvm.options.

The assembled distribution (see :mod:`.assembly`) is shared and never written by a running node;
each node (one per HTTP port) gets its own config, data and logs under a run directory, so two
nodes can run side by side from one distribution.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_VERSION = "2.19.1"
DEFAULT_PORT = 9250
DEFAULT_PLUGINS = ("opensearch-knn",)
# neural-search needs k-NN and ml-commons, ml-commons needs job-scheduler: install order matters.
ML_PLUGIN = "opensearch-ml-plugin"
ML_PLUGINS = ("opensearch-knn", "opensearch-job-scheduler", ML_PLUGIN, "neural-search")
# ml-commons keeps its model index and connector clients on the heap; 1g starts but runs short.
ML_HEAP = "2g"
LOOPBACK_ENDPOINTS = r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/.*)?$"
# Written last into an assembled distribution: its presence means the tree is complete.
MARKER = "retrosearch-assembly.json"
# Bumped when the assembled tree changes, so cached distributions of an older layout are rebuilt.
ASSEMBLY_REVISION = 2


class ServerError(RuntimeError):
    """Assembly or start-up failed; the message carries the relevant log tail."""


def default_cache_dir() -> Path:
    """The project's cache root, shared with the virtualenv builder (scripts/env.sh)."""
    return Path(os.environ.get("RETROSEARCH_CACHE") or Path.home() / ".cache" / "retrosearch")


@dataclass
class ServerSettings:
    """Where and how one node runs. Two nodes differ at least by `port`."""

    version: str = DEFAULT_VERSION
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    heap: str = "1g"
    cache_dir: Path = field(default_factory=default_cache_dir)
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = DEFAULT_PLUGINS
    user: str = "opensearch"
    java_home: Path | None = None
    cluster_name: str = "retrosearch"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def version_dir(self) -> Path:
        return Path(self.cache_dir) / "opensearch" / self.version

    @property
    def home(self) -> Path:
        """The assembled distribution; its name carries the plugin list so each list has its own."""
        return self.version_dir / (f"dist{ASSEMBLY_REVISION}-" + ("+".join(self.plugins) or "core"))

    @property
    def node_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else self.version_dir / "run" / str(self.port)

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "opensearch.pid"

    @property
    def console_log(self) -> Path:
        return self.node_dir / "logs" / "console.log"


def ml_node_settings() -> dict[str, Any]:
    """What ml-commons needs on a single local node to call a query service on loopback.

    Out of the box it runs models only on dedicated ML nodes, refuses work above 90% native
    memory (CI machines often sit there) and above 85% JVM heap (a small local heap sits there
    with uncollected garbage while a few models are loaded), calls only a list of commercial
    endpoints and never a private or loopback address.
    """
    return {
        "plugins.ml_commons.only_run_on_ml_node": False,
        "plugins.ml_commons.native_memory_threshold": 100,
        "plugins.ml_commons.jvm_heap_memory_threshold": 95,
        "plugins.ml_commons.connector.private_ip_enabled": True,
        "plugins.ml_commons.trusted_connector_endpoints_regex": LOOPBACK_ENDPOINTS,
    }


def local_model_settings() -> dict[str, Any]:
    """What ml-commons needs to run our encoder itself (a local ONNX model, uploaded in chunks).

    The libtorch those models need comes from the environment the server starts the node with.
    """
    return {"plugins.ml_commons.allow_registering_model_via_local_file": True}


def with_ml(settings: ServerSettings, heap_given: bool = False) -> ServerSettings:
    """`settings` with the neural-search plugin chain and ml-commons' one-node settings added.

    Plugins the caller listed beyond the chain are kept after it; explicit `extra` settings win.
    """
    plugins = ML_PLUGINS + tuple(p for p in settings.plugins if p not in ML_PLUGINS)
    return replace(
        settings,
        plugins=plugins,
        extra={**ml_node_settings(), **local_model_settings(), **settings.extra},
        heap=settings.heap if heap_given else ML_HEAP,
    )


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return json.dumps([str(v) for v in value])  # a JSON array is a YAML flow sequence
    # A JSON string is a valid double-quoted YAML scalar, and OpenSearch parses numbers from strings.
    return json.dumps(str(value))


def render_opensearch_yml(settings: ServerSettings, node_dir: Path | None = None) -> str:
    """The node's opensearch.yml: single node on loopback, data and logs in its run dir, plus `extra`."""
    node_dir = node_dir or settings.node_dir
    values: dict[str, Any] = {
        "cluster.name": settings.cluster_name,
        "node.name": f"{settings.cluster_name}-{settings.port}",
        "discovery.type": "single-node",
        # Loopback keeps bootstrap checks (vm.max_map_count, file limits) as warnings.
        "network.host": settings.host,
        "http.port": settings.port,
        "path.data": str(node_dir / "data"),
        "path.logs": str(node_dir / "logs"),
        # CI disks are often >90% full; the default watermark would make every index read-only.
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": False,
    }
    values.update(settings.extra)
    lines = ["# Written by retrosearch on every start; edits are overwritten."]
    # An `extra` value of None removes the default (a cluster node drops discovery.type).
    lines += [f"{key}: {_yaml_scalar(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def render_jvm_options(text: str, node_dir: Path) -> str:
    # Relative paths in the stock file resolve against the read-only home; the heap comes from
    # OPENSEARCH_JAVA_OPTS instead.
    text = re.sub(r"(?<=[=:])logs/", f"{node_dir / 'logs'}/", text)
    text = text.replace("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={node_dir / 'data'}")
    return "".join(line for line in text.splitlines(keepends=True) if not re.match(r"^-Xm[sx]", line))


def prepare_node_dir(settings: ServerSettings, home: Path) -> Path:
    node_dir = settings.node_dir
    for sub in ("data", "logs", "tmp"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    config = node_dir / "config"
    # A fresh copy each start, so a changed distribution or settings never mixes with old files.
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(home / "config", config)
    (config / "opensearch.yml").write_text(render_opensearch_yml(settings, node_dir))
    jvm = config / "jvm.options"
    jvm.write_text(render_jvm_options(jvm.read_text(), node_dir))
    return node_dir
