"""Our encoder as an ml-commons local model inside OpenSearch (``retrosearch opensearch deploy-model``).

A real ML node (scripts/test.sh starts it with --with-ml, which gives it the offline libtorch and
allows chunked uploads) runs MiniLM exported by us. The checkpoint carries distinct query and passage
templates (so it becomes two models, one per template), and a vector computed with the wrong prefix
is caught. One deploy serves the whole module (one ONNX export per checkpoint fingerprint, cached;
two uploads and deploys; the SciFact cut indexed once).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from tests.conftest import cosine, minilm_with_templates, ml_settings_lock
from tests.plugin.serve.http_helpers import run_cli

pytestmark = pytest.mark.integration

QUERY_TEMPLATE = "query: {text}"
PASSAGE_TEMPLATE = "passage: {text}"
EF_SEARCH = 256  # what our dense searches use, so Lucene's HNSW explores alike


def _deploy(model: Path | str, os_url: str, *extra: str, check: bool = True):
    return run_cli(
        "opensearch", "deploy-model", "--model", str(model), "--opensearch-url", os_url, *extra, check=check
    )


def _os_ids(response: dict) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


@pytest.fixture(scope="module")
def deployed(ml_url: str, small_scifact: Path, tmp_path_factory: pytest.TempPathFactory):
    """The small SciFact cut indexed with templated MiniLM, and that checkpoint deployed for the index."""
    from retrosearch.core.config import OpenSearchSettings, Settings
    from retrosearch.core.opensearch.client import connect
    from retrosearch.plugin.opensearch import local_model
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    model = minilm_with_templates(
        tmp_path_factory.mktemp("local") / "minilm-local", QUERY_TEMPLATE, PASSAGE_TEMPLATE
    )
    name = f"local-{uuid.uuid4().hex[:8]}"
    run_cli(
        "index",
        "--collection",
        str(small_scifact),
        "--model",
        str(model),
        "--backend",
        "opensearch",
        "--opensearch-url",
        ml_url,
        "--index-name",
        name,
        "--replicas",
        "0",
        "--quiet",
    )
    settings = Settings(opensearch=OpenSearchSettings(url=ml_url))
    client = connect(settings.opensearch)
    queries = [
        json.loads(line)["text"] for line in (small_scifact / "queries.jsonl").read_text().splitlines()
    ]
    first = None
    try:
        first = json.loads(_deploy(model, ml_url, "--index-name", name, "--json-out", "-").stdout)
        engine = QueryEngine.open(settings, IndexTarget(index_name=name))
        yield SimpleNamespace(
            model=model, os_url=ml_url, name=name, first=first, client=client, engine=engine, queries=queries
        )
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)
        if first:
            client.search_pipeline.delete(id=first["pipelines"]["search"], ignore=[404])
            client.ingest.delete_pipeline(id=first["pipelines"]["ingest"], ignore=[404])
            for model in first["models"]:
                local_model.discard(client, model["model_id"])


def test_deploy_matches_our_encoder_and_a_rerun_reuses_the_model(deployed):
    first = deployed.first
    assert [m["role"] for m in first["models"]] == ["query", "passage"]
    assert [m["model_id"] for m in first["models"]] == [first["query_model_id"], first["passage_model_id"]]
    for model in first["models"]:
        # Parity over short, medium and beyond-max-length texts, each through its own template.
        assert list(model["parity_min_cosine"]) == [model["role"]]
        assert model["parity_min_cosine"][model["role"]] >= 0.9999
        stored = deployed.client.plugins.ml.get_model(model_id=model["model_id"])
        assert stored["model_state"] == "DEPLOYED" and stored["model_format"] == "ONNX"
        config = stored["model_config"]
        assert config["pooling_mode"] == "MEAN" and config["normalize_result"] is True
        assert config["embedding_dimension"] == 384
        # The prefixes live in the tokenizer: an "asymmetric" model would fail every neural query.
        assert "query_prefix" not in config and "passage_prefix" not in config
    again = _deploy(deployed.model, deployed.os_url)
    assert f"{first['query_model_id']} (reused" in again.stdout
    assert f"{first['passage_model_id']} (reused" in again.stdout
    settings = deployed.client.indices.get_settings(index=deployed.name)[deployed.name]["settings"]["index"]
    assert settings["search"]["default_pipeline"] == first["pipelines"]["search"]
    assert settings["default_pipeline"] == first["pipelines"]["ingest"]


def test_neural_and_hybrid_queries_return_the_dense_top_10(deployed):
    from retrosearch.core.opensearch.pipelines import ensure_hybrid_pipeline

    queries = deployed.queries
    assert len(queries) >= 20
    vectors, _ = deployed.engine.encode(queries, "query")
    dense = deployed.engine.search(vectors, 10)
    ours_neural = deployed.engine.search(None, 10, texts=queries, mode="neural")
    all_dense = ensure_hybrid_pipeline(deployed.client, 1.0)
    model_id = deployed.first["query_model_id"]
    for i, query in enumerate(queries):
        # OpenSearch's own neural query as users send it: no model id (the index's default pipeline).
        neural = {
            "neural": {
                "embedding": {"query_text": query, "k": 10, "method_parameters": {"ef_search": EF_SEARCH}}
            }
        }
        theirs = deployed.client.search(
            index=deployed.name, body={"size": 10, "_source": False, "query": neural}
        )
        assert _os_ids(theirs) == dense.ids[i], query
        assert ours_neural.ids[i] == dense.ids[i]
        # Hybrid with all weight on its neural part ranks like dense (the lowest hit normalises to 0
        # and may tie with BM25-only hits, hence the top 9).
        named = {"neural": {"embedding": {**neural["neural"]["embedding"], "model_id": model_id}}}
        hybrid = {
            "size": 10,
            "_source": False,
            "query": {"hybrid": {"queries": [{"match": {"text": query}}, named]}},
        }
        ranked = _os_ids(
            deployed.client.search(index=deployed.name, body=hybrid, params={"search_pipeline": all_dense})
        )
        assert ranked[:9] == dense.ids[i][:9], query
    # And through the index's default pipeline (its weights, its default model).
    hybrid = {"size": 10, "query": {"hybrid": {"queries": [{"match": {"text": queries[0]}}, neural]}}}
    assert len(_os_ids(deployed.client.search(index=deployed.name, body=hybrid))) == 10


def test_ingest_pipeline_embeds_a_document_without_vector_with_the_passage_template(deployed):
    doc = {
        "title": "Vitamin D and bone",
        "text": "Supplementation raised bone mineral density in older adults.",
    }
    deployed.client.index(index=deployed.name, id="via-local-pipeline", body=doc, refresh=True)
    try:
        stored = deployed.client.get(index=deployed.name, id="via-local-pipeline")["_source"]
        joined = f"{doc['title']} {doc['text']}"  # the spec's title separator
        passage, _ = deployed.engine.encode([joined], "passage")
        query, _ = deployed.engine.encode([joined], "query")
        assert cosine(stored["embedding"], passage[0]) >= 0.9999
        assert cosine(stored["embedding"], query[0]) < 0.999  # the query prefix gives another vector
    finally:
        deployed.client.delete(index=deployed.name, id="via-local-pipeline", refresh=True)


def test_no_deploy_reaches_for_an_outside_host(deployed):
    """ml-commons' DJL downloads libtorch unless the node has it: nothing in the log may point outside."""
    nodes = deployed.client.nodes.info(metric="settings")["nodes"].values()
    logs = [Path(node["settings"]["path"]["logs"]) for node in nodes]
    readable = [log for log in logs if log.is_dir() and any(log.glob("*.log"))]
    if not readable:
        pytest.skip(f"the node's logs ({logs}) are not on this machine")
    text = "\n".join(p.read_text(errors="replace") for log in readable for p in log.glob("*.log"))
    assert "Failed to save pytorch index file" not in text
    # Downloads, failed connections and DJL's own lookups, with the host they name.
    suspicious = [
        line
        for line in text.splitlines()
        if re.search(r"download|UnknownHost|ConnectException|publish\.djl|LibUtils", line, re.I)
    ]
    hosts = {
        urlsplit(url).hostname for line in suspicious for url in re.findall(r"https?://[^\s\"'<>]+", line)
    }
    assert hosts <= {"127.0.0.1", "localhost"}, suspicious[:5]


def test_a_decoder_lm_encoder_is_refused_in_one_line(ml_url: str, tiny_llama: Path):
    result = _deploy(tiny_llama, ml_url, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "opensearch connect" in result.stderr and "last token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_that_does_not_export_is_refused_in_one_line(
    ml_url: str, tiny_bert: Path, tmp_path: Path
):
    broken = tmp_path / "no-weights"
    broken.mkdir()
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        if (tiny_bert / name).exists():
            (broken / name).write_bytes((tiny_bert / name).read_bytes())
    result = _deploy(broken, ml_url, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(broken) in result.stderr and "could not be exported" in result.stderr


def test_a_rejected_model_config_and_a_failed_deploy_leave_nothing_behind(deployed, tiny_bert: Path):
    from retrosearch.plugin.opensearch import local_model
    from retrosearch.plugin.opensearch.errors import LocalModelError
    from retrosearch.plugin.opensearch.local_package import build_packages

    client = deployed.client
    package = build_packages(str(tiny_bert))[0]
    name = local_model.object_name(package)
    group = local_model.ml_commons.ensure_model_group(client)
    bad = SimpleNamespace(
        **{
            **vars(package),
            "model_config": {**package.model_config, "pooling_mode": "LAST_WORD"},
            "size": package.size,
            "sha256": package.sha256,
        }
    )
    with pytest.raises(LocalModelError, match="rejected the registration") as rejected:
        local_model.register(client, bad, name, group)
    assert "LAST_WORD" in str(rejected.value)
    assert local_model.find_models(client, name) == []
    threshold = "plugins.ml_commons.jvm_heap_memory_threshold"  # 0: the JVM's heap is always "too full"
    chunks = {"query": {"exists": {"field": "chunk_number"}}}
    with ml_settings_lock():  # other tests' models must not be refused meanwhile for longer than this
        before = client.count(index=local_model.MODEL_INDEX, body=chunks)["count"]
        try:
            client.cluster.put_settings(body={"transient": {threshold: 0}})
            with pytest.raises(LocalModelError, match=threshold):
                local_model.deploy_local_model(client, package, deployed.os_url)
        finally:
            client.cluster.put_settings(body={"transient": {threshold: None}})
        client.indices.refresh(index=local_model.MODEL_INDEX)
        assert client.count(index=local_model.MODEL_INDEX, body=chunks)["count"] == before  # no chunk left
    assert local_model.find_models(client, name) == []


def test_a_node_without_ml_commons_is_refused_with_the_command_to_start_one():
    from retrosearch.plugin.opensearch.errors import LocalModelError
    from retrosearch.plugin.opensearch.local_model import require_ml

    class OnlyKnn:  # a cluster's plugin list as _cat/plugins gives it
        class cat:
            @staticmethod
            def plugins(format: str):
                return [{"component": "opensearch-knn"}]

    with pytest.raises(LocalModelError, match="--with-ml") as refused:
        require_ml(OnlyKnn(), "http://127.0.0.1:9200")
    assert "opensearch-ml" in str(refused.value) and "http://127.0.0.1:9200" in str(refused.value)
