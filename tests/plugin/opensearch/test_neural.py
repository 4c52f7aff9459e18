"""OpenSearch's own neural, hybrid and ingest-pipeline embedding, answered by our query service.

A real node with ml-commons and neural-search (scripts/test.sh starts it with --with-ml) calls a
real service over HTTP. The encoder is MiniLM with distinct query and passage templates, so a
vector that went through the wrong template is caught.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from tests.conftest import cosine, minilm_with_templates, ml_settings_lock, remove_ml_models
from tests.plugin.serve.http_helpers import run_cli, serving

pytestmark = pytest.mark.integration

QUERY_TEMPLATE = "query: {text}"
PASSAGE_TEMPLATE = "passage: {text}"


@pytest.fixture(scope="module")
def asymmetric_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's weights with a query and a passage template of its own (the weights are linked)."""
    folder = tmp_path_factory.mktemp("asym") / "minilm-asym"
    return minilm_with_templates(folder, QUERY_TEMPLATE, PASSAGE_TEMPLATE)


def _client(url: str):
    from retrosearch.core.config import OpenSearchSettings
    from retrosearch.core.opensearch.client import connect

    return connect(OpenSearchSettings(url=url))


def _connect(service_url: str, os_url: str, *extra: str, check: bool = True):
    return run_cli("opensearch", "connect", "--service-url", service_url, "--opensearch-url", os_url, *extra,
                   check=check)


@pytest.fixture(scope="module")
def connected(ml_url: str, small_scifact: Path, asymmetric_model: Path):
    """The small SciFact cut in OpenSearch, a service over it and the service connected to it."""
    from retrosearch.core.config import OpenSearchSettings, Settings
    from retrosearch.plugin.serve.app import create_app
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    name = f"neural-{uuid.uuid4().hex[:8]}"
    run_cli("index", "--collection", str(small_scifact), "--model", str(asymmetric_model), "--backend", "opensearch",
            "--opensearch-url", ml_url, "--index-name", name, "--replicas", "0", "--quiet")
    settings = Settings(opensearch=OpenSearchSettings(url=ml_url))
    engine = QueryEngine.open(settings, IndexTarget(index_name=name))
    client = _client(ml_url)
    queries = [json.loads(line)["text"] for line in (small_scifact / "queries.jsonl").read_text().splitlines()]
    with serving(create_app(settings, engine)) as url:
        try:
            first = json.loads(_connect(url, ml_url, "--index-name", name, "--json-out", "-").stdout)
            yield SimpleNamespace(url=url, os_url=ml_url, name=name, first=first, engine=engine, settings=settings,
                                  client=client, queries=queries)
        finally:
            client.indices.delete(index=name, ignore_unavailable=True)
            client.search_pipeline.delete(id=first["pipelines"]["search"], ignore=[404])
            client.ingest.delete_pipeline(id=first["pipelines"]["ingest"], ignore=[404])
            remove_ml_models(client, url)


def _ids(hits: list[dict]) -> list[str]:
    return [h["id"] for h in hits]


def _os_ids(response: dict) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def test_connect_creates_checked_models_and_is_idempotent(connected):
    first = connected.first
    assert first["model"].endswith("minilm-asym") and first["dim"] == 384
    assert first["query_model_id"] != first["passage_model_id"]
    assert all(m["created"] for m in first["models"].values())
    again = _connect(connected.url, connected.os_url, "--index-name", connected.name)
    assert f"query model: {first['query_model_id']} (reused" in again.stdout
    assert f"passage model: {first['passage_model_id']} (reused" in again.stdout
    for mode in ("query", "passage"):
        model = connected.client.plugins.ml.get_model(model_id=first[f"{mode}_model_id"])
        assert model["model_state"] == "DEPLOYED" and model["algorithm"] == "REMOTE"
    settings = connected.client.indices.get_settings(index=connected.name)[connected.name]["settings"]["index"]
    assert settings["search"]["default_pipeline"] == first["pipelines"]["search"]
    assert settings["default_pipeline"] == first["pipelines"]["ingest"]


def test_neural_query_returns_the_dense_top_10_for_20_real_queries(connected):
    queries = connected.queries
    assert len(queries) >= 20
    dense = httpx.post(f"{connected.url}/search", json={"query": queries, "k": 10}, timeout=120).json()["results"]
    ours_neural = httpx.post(f"{connected.url}/search", json={"query": queries, "k": 10, "mode": "neural"},
                             timeout=120).json()["results"]
    for query, mine, via_ours in zip(queries, dense, ours_neural):
        # OpenSearch's own neural query as users send it: no model id (the pipeline's default),
        # with the efSearch our dense searches use (Lucene's HNSW would otherwise explore only k).
        body = {"size": 10, "_source": False, "query": {"neural": {"embedding": {
            "query_text": query, "k": 10, "method_parameters": {"ef_search": 256}}}}}
        theirs = connected.client.search(index=connected.name, body=body)
        assert _os_ids(theirs) == _ids(mine["hits"]), query
        assert _ids(via_ours["hits"]) == _ids(mine["hits"])
        assert np.allclose([h["score"] for h in via_ours["hits"]], [h["score"] for h in mine["hits"]], atol=1e-4)


def test_ingest_pipeline_embeds_title_and_text_with_the_passage_template(connected):
    from retrosearch.core.opensearch.pipelines import PASSAGE_FIELD

    doc = {"title": "Vitamin D and bone", "text": "Supplementation raised bone mineral density in older adults."}
    connected.client.index(index=connected.name, id="via-pipeline", body=doc, refresh=True)
    stored = connected.client.get(index=connected.name, id="via-pipeline")["_source"]
    assert PASSAGE_FIELD not in stored and stored["title"] == doc["title"]
    joined = f"{doc['title']} {doc['text']}"  # the title separator of the spec
    embed = lambda mode: httpx.post(f"{connected.url}/embed", json={"texts": [joined], "mode": mode},  # noqa: E731
                                    timeout=60).json()["vectors"][0]
    assert cosine(stored["embedding"], embed("passage")) >= 0.9999
    assert cosine(stored["embedding"], embed("query")) < 0.999  # the other template gives another vector
    # A document that brings its own vector keeps it.
    own = np.zeros(384, dtype=np.float32)
    own[0] = 1.0
    connected.client.index(index=connected.name, id="own-vector", body={**doc, "embedding": own.tolist()}, refresh=True)
    assert connected.client.get(index=connected.name, id="own-vector")["_source"]["embedding"][:2] == [1.0, 0.0]
    for doc_id in ("via-pipeline", "own-vector"):
        connected.client.delete(index=connected.name, id=doc_id, refresh=True)


def test_hybrid_ranks_differently_from_both_parts_and_follows_its_weights(connected):
    queries = connected.queries
    post = lambda **body: httpx.post(f"{connected.url}/search", json={"query": queries, "k": 10, **body},  # noqa: E731
                                     timeout=120).json()["results"]
    dense, bm25 = post(mode="dense"), post(mode="bm25")
    differs = 0
    for query, d, b in zip(queries, dense, bm25):
        # OpenSearch's own hybrid query (match + neural) through the index's default pipeline.
        body = {"size": 10, "_source": False, "query": {"hybrid": {"queries": [
            {"match": {"text": query}},
            {"neural": {"embedding": {"query_text": query, "k": 10, "method_parameters": {"ef_search": 256}}}}]}}}
        theirs = _os_ids(connected.client.search(index=connected.name, body=body))
        assert len(theirs) == 10
        differs += theirs != _ids(d["hits"]) and theirs != _ids(b["hits"])
    assert differs >= 1
    ours = post(mode="hybrid")
    assert all(0.0 <= h["score"] <= 1.0 for r in ours for h in r["hits"])
    assert any(_ids(h["hits"]) not in (_ids(d["hits"]), _ids(b["hits"])) for h, d, b in zip(ours, dense, bm25))
    # Min-max normalisation keeps each part's order: all weight on one part ranks like it (the
    # part's lowest hit normalises to 0 and may tie with the other part's hits, hence top 9).
    for weight, part in ((1.0, dense), (0.0, bm25)):
        for h, p in zip(post(mode="hybrid", hybrid_weight=weight), part):
            assert _ids(h["hits"])[:9] == _ids(p["hits"])[:9]


def test_cli_search_modes(connected):
    query = connected.queries[0]
    runs = {}
    for mode in ("dense", "neural", "bm25", "hybrid"):
        out = run_cli("search", "--json-out", "-", "--index-name", connected.name, "--opensearch-url", connected.os_url,
                      "--mode", mode, "-k", "10", query).stdout
        runs[mode] = _ids(json.loads(out)[0]["hits"])
    assert runs["neural"] == runs["dense"] and len(runs["bm25"]) == 10
    assert runs["bm25"] != runs["dense"]
    bad = run_cli("search", "--index-name", connected.name, "--opensearch-url", connected.os_url, "--mode", "sparse",
                  "x", check=False)
    # --mode is a fixed choice: the parser refuses the value and lists the modes.
    assert bad.returncode == 2 and "'sparse'" in bad.stderr and "--mode" in bad.stderr and "hybrid" in bad.stderr


def test_connect_errors_name_the_url_and_the_blocking_setting(connected):
    from retrosearch.plugin.opensearch.endpoint_trust import TRUSTED_SETTING

    dead = _connect("http://127.0.0.1:9", connected.os_url, check=False)
    assert dead.returncode == 2 and "http://127.0.0.1:9" in dead.stderr and "Traceback" not in dead.stderr
    client = connected.client
    with ml_settings_lock():  # no other test connects a service while the endpoints are restricted
        try:
            client.cluster.put_settings(body={"persistent": {TRUSTED_SETTING: ["^https://api\\.example\\.com/.*$"]}})
            blocked = _connect(connected.url, connected.os_url, check=False)
            assert blocked.returncode == 2 and TRUSTED_SETTING in blocked.stderr and connected.url in blocked.stderr
            trusted = _connect(connected.url, connected.os_url, "--trust-endpoint")
            assert f"cluster setting changed: {TRUSTED_SETTING}" in trusted.stdout
            assert "(reused" in trusted.stdout
        finally:
            client.cluster.put_settings(body={"persistent": {TRUSTED_SETTING: None}})


def test_service_down_at_query_time_is_a_clear_error(connected):
    """The index is pointed at a second service, which then stops; the first one keeps running."""
    from retrosearch.plugin.serve.app import create_app

    second = None
    try:
        with serving(create_app(connected.settings, connected.engine)) as second:
            _connect(second, connected.os_url, "--index-name", connected.name)
        cli = run_cli("search", "--index-name", connected.name, "--opensearch-url", connected.os_url, "--mode",
                      "neural", "vitamin", check=False)
        assert cli.returncode == 2 and "cannot reach the query service" in cli.stderr
        assert "Traceback" not in cli.stderr
        answer = httpx.post(f"{connected.url}/search", json={"query": "vitamin", "mode": "neural"}, timeout=60)
        assert answer.status_code == 502
        assert "cannot reach the query service" in answer.json()["error"]["message"]
    finally:
        _connect(connected.url, connected.os_url, "--index-name", connected.name)
        if second:
            remove_ml_models(connected.client, second)
