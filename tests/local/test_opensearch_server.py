"""Tests for the local OpenSearch node (plugin/opensearch/node_config.py, assembly.py, server.py) and the node it runs.

Integration tests talk to the node at $RETROSEARCH_OPENSEARCH_URL (default http://127.0.0.1:9250),
started beforehand with `retrosearch opensearch start`, and skip when nothing answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from retrosearch.core import process
from retrosearch.local.opensearch import node_config, server

URL = os.environ.get("RETROSEARCH_OPENSEARCH_URL", "http://127.0.0.1:9250").rstrip("/")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: bypass any $http_proxy


def _request(
    method: str, path: str, body: Any = None, url: str = URL, timeout: float = 30.0
) -> tuple[int, Any]:
    """Send JSON (NDJSON when `body` is a str); return (status, decoded body), also for 4xx/5xx."""
    data, content_type = None, "application/json"
    if isinstance(body, str):
        data, content_type = body.encode(), "application/x-ndjson"
    elif body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def node(opensearch_url: str) -> str:
    return opensearch_url


@pytest.fixture
def index_name(node: str):
    name = f"test-knn-{uuid.uuid4().hex[:8]}"
    yield name
    _request("DELETE", f"/{name}")


def _knn_index_body(engine: str) -> dict[str, Any]:
    return {
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {
            "properties": {
                "emb": {
                    "type": "knn_vector",
                    "dimension": 4,
                    "space_type": "innerproduct",
                    "method": {
                        "name": "hnsw",
                        "engine": engine,
                        "parameters": {"m": 16, "ef_construction": 100},
                    },
                },
                "title": {"type": "keyword"},
            }
        },
    }


# ---------------------------------------------------------------------------------------------- unit


def test_render_opensearch_yml_has_single_node_loopback_paths_and_extras(tmp_path: Path) -> None:
    settings = node_config.ServerSettings(
        port=9311,
        cache_dir=tmp_path,
        extra={
            "thread_pool.write.queue_size": 2,
            "cluster.name": "other",
            "node.attr.note": 'a "quoted" value',
        },
    )
    text = node_config.render_opensearch_yml(settings)
    lines = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith("#"))
    node_dir = tmp_path / "opensearch" / node_config.DEFAULT_VERSION / "run" / "9311"
    assert lines["discovery.type"] == '"single-node"'
    assert lines["network.host"] == '"127.0.0.1"'
    assert lines["http.port"] == "9311"
    assert lines["path.data"] == json.dumps(str(node_dir / "data"))
    assert lines["path.logs"] == json.dumps(str(node_dir / "logs"))
    assert lines["cluster.routing.allocation.disk.threshold_enabled"] == "false"
    assert lines["thread_pool.write.queue_size"] == "2"
    assert lines["cluster.name"] == '"other"', "extras override the defaults"
    assert json.loads(lines["node.attr.note"]) == 'a "quoted" value'
    assert len(lines) == len(text.splitlines()) - 1, "one setting per line, each key once"


def test_render_opensearch_yml_uses_explicit_run_dir(tmp_path: Path) -> None:
    settings = node_config.ServerSettings(port=9312, cache_dir=tmp_path, run_dir=tmp_path / "node")
    text = node_config.render_opensearch_yml(settings)
    assert f"path.data: {json.dumps(str(tmp_path / 'node' / 'data'))}" in text
    assert settings.pid_file == tmp_path / "node" / "opensearch.pid"


def test_settings_keep_each_plugin_list_in_its_own_home(tmp_path: Path) -> None:
    knn = node_config.ServerSettings(cache_dir=tmp_path)
    core = node_config.ServerSettings(cache_dir=tmp_path, plugins=())
    assert knn.home != core.home
    assert knn.home.parent == tmp_path / "opensearch" / node_config.DEFAULT_VERSION


def test_with_ml_adds_the_plugin_chain_in_install_order_and_one_node_settings(tmp_path: Path) -> None:
    import re

    explicit = {"plugins.ml_commons.native_memory_threshold": 95}
    settings = node_config.with_ml(node_config.ServerSettings(cache_dir=tmp_path, extra=explicit))
    assert settings.plugins == node_config.ML_PLUGINS and settings.heap == node_config.ML_HEAP
    text = node_config.render_opensearch_yml(settings)
    assert "plugins.ml_commons.only_run_on_ml_node: false" in text
    assert "plugins.ml_commons.connector.private_ip_enabled: true" in text
    assert "plugins.ml_commons.native_memory_threshold: 95" in text  # the caller's value wins
    assert "plugins.ml_commons.allow_registering_model_via_local_file: true" in text  # chunked model uploads
    assert re.fullmatch(node_config.LOOPBACK_ENDPOINTS, "http://127.0.0.1:8000/v1/embeddings")
    assert re.fullmatch(node_config.LOOPBACK_ENDPOINTS, "http://localhost:8000/v1/embeddings")
    assert not re.fullmatch(node_config.LOOPBACK_ENDPOINTS, "http://10.0.0.7:8000/v1/embeddings")
    more = node_config.with_ml(node_config.ServerSettings(heap="3g", plugins=("opensearch-knn", "opensearch-sql")), heap_given=True)
    assert more.plugins == (*node_config.ML_PLUGINS, "opensearch-sql") and more.heap == "3g"
    assert more.home != node_config.ServerSettings().home


# ---------------------------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_knn_plugin_is_installed_without_native_engines(node: str) -> None:
    status, plugins = _request("GET", "/_cat/plugins?format=json")
    assert status == 200
    assert "opensearch-knn" in {p["component"] for p in plugins}
    status, stats = _request("GET", "/_plugins/_knn/stats")
    assert status == 200
    for node_stats in stats["nodes"].values():
        # The Maven Central zip carries no JNI libraries; nothing must have loaded them.
        assert node_stats["faiss_initialized"] is False
        assert node_stats["nmslib_initialized"] is False


@pytest.mark.integration
def test_node_has_the_ingest_processors_pipelines_need(node: str) -> None:
    status, info = _request("GET", "/_nodes/ingest?filter_path=nodes.*.ingest.processors")
    assert status == 200
    processors = {p["type"] for n in info["nodes"].values() for p in n["ingest"]["processors"]}
    assert {"script", "remove", "set", "rename"} <= processors


@pytest.mark.integration
def test_lucene_hnsw_innerproduct_returns_nearest_first(index_name: str) -> None:
    status, body = _request("PUT", f"/{index_name}", _knn_index_body("lucene"))
    assert status == 200, body
    docs = {
        "x": [1.0, 0.0, 0.0, 0.0],
        "y": [0.0, 1.0, 0.0, 0.0],
        "z": [0.0, 0.0, 1.0, 0.0],
        "xy": [0.6, 0.8, 0.0, 0.0],
    }
    bulk = "".join(
        json.dumps({"index": {"_id": doc_id}}) + "\n" + json.dumps({"emb": vec, "title": doc_id}) + "\n"
        for doc_id, vec in docs.items()
    )
    status, body = _request("POST", f"/{index_name}/_bulk?refresh=true", bulk)
    assert status == 200 and not body["errors"], body

    query = {"size": 3, "query": {"knn": {"emb": {"vector": [0.1, 0.9, 0.0, 0.1], "k": 3}}}}
    status, body = _request("POST", f"/{index_name}/_search", query)
    assert status == 200, body
    hits = body["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["y", "xy", "x"]
    # Lucene innerproduct: score = 1 + x.y for x.y >= 0.
    assert hits[0]["_score"] == pytest.approx(1.9, abs=1e-4)

    filtered = {
        "size": 2,
        "query": {
            "knn": {"emb": {"vector": [0.1, 0.9, 0.0, 0.1], "k": 2, "filter": {"term": {"title": "x"}}}}
        },
    }
    status, body = _request("POST", f"/{index_name}/_search", filtered)
    assert status == 200, body
    assert [h["_id"] for h in body["hits"]["hits"]] == ["x"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_faiss_engine_is_accepted_but_kills_the_node_at_first_flush(node: str) -> None:
    """Pins down why every mapping here must say `"engine": "lucene"`.

    A faiss mapping is accepted and documents index, but the first segment write loads the JNI
    library, which the Maven zip lacks: UnsatisfiedLinkError is fatal and the JVM exits. That would
    take the shared node down, so this runs on a throwaway node of its own.
    """
    _, root = _request("GET", "/")
    settings = node_config.ServerSettings(version=root["version"]["number"], port=_free_port(), heap="512m")
    settings.run_dir = settings.version_dir / "run" / f"faiss-probe-{settings.port}"
    # start() assembles the k-NN-only distribution on first use (from the Maven cache: seconds).
    try:
        info = server.start(settings, wait_s=180)
        pid = info["pid"]
        status, body = _request("PUT", "/probe", _knn_index_body("faiss"), url=settings.url)
        assert status == 200, f"faiss mapping was expected to be accepted: {body}"
        status, body = _request("PUT", "/probe/_doc/1", {"emb": [1.0, 0.0, 0.0, 0.0]}, url=settings.url)
        assert status == 201, body
        try:
            status, body = _request("POST", "/probe/_refresh", url=settings.url, timeout=60)
        except OSError as error:  # the JVM exits while the request is open
            status, body = None, repr(error)
        assert status != 200, f"refresh of a faiss segment succeeded: {body}"
        deadline = time.monotonic() + 30
        while process.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process.pid_alive(pid), "the node survived a faiss flush: native libraries present?"
        log = server.log_tail(settings, lines=400)
        assert "UnsatisfiedLinkError" in log and "opensearchknn_faiss" in log, log
    finally:
        server.stop(settings, grace_s=10)
        shutil.rmtree(settings.run_dir, ignore_errors=True)
