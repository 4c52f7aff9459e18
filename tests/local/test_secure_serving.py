"""The query side on the secured 3-node cluster: ``serve --index-name`` as the searcher, ``opensearch
connect`` with the service's API key in the connector's credentials, OpenSearch's ``neural`` and
``hybrid`` queries and default ingest pipeline over https, and faults under query load (a data node
killed and restarted, the whole cluster stopped and started) measured by the same code that gives the
docs' figures (:mod:`retrosearch.benchmarks.opensearch_faults`).

The cluster must run the ML plugins (scripts/test.sh starts it with ``--with-ml``). The fault tests
come last: the cluster restart is this phase's final test.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from retrosearch.benchmarks import opensearch_faults as faults
from retrosearch.local.opensearch import cluster
from tests.conftest import cosine, remove_ml_models
from tests.local.secure_helpers import (
    PORT,
    admin_json,
    client_as,
    index_as,
    passwords,
    require_ml,
    run_as,
    url_args,
)
from tests.plugin.serve.http_helpers import free_port

pytestmark = pytest.mark.secure

INDEX = "retrosearch-secure-serve"
KEY_ENV = "RETROSEARCH_TEST_SERVICE_KEY"


@pytest.fixture(scope="module")
def served(secured, small_scifact: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory):
    """The small SciFact cut loaded by the writer, a service over it run by the searcher with an API key,
    and the service connected to the index by the admin."""
    require_ml(secured)
    index_as(secured, "writer", small_scifact, tiny_bert, INDEX)
    key = secrets.token_hex(16)
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = faults.start_service(secured, INDEX, port, KEY_ENV, key, log)
    url = f"http://127.0.0.1:{port}"
    admin = client_as(secured, "admin")
    queries = [
        json.loads(line)["text"] for line in (small_scifact / "queries.jsonl").read_text().splitlines()
    ]
    try:
        connected = run_as(
            secured,
            "admin",
            "opensearch",
            "connect",
            "--service-url",
            url,
            "--index-name",
            INDEX,
            *url_args(secured),
            "--api-key-env",
            KEY_ENV,
            "--json-out",
            "-",
            **{KEY_ENV: key},
        )
        yield SimpleNamespace(
            url=url,
            key=key,
            proc=proc,
            log=log,
            queries=queries,
            admin=admin,
            connection=json.loads(connected.stdout),
            headers={"Authorization": f"Bearer {key}"},
        )
    finally:
        faults.stop_service(proc)
        admin.indices.delete(index=INDEX, ignore_unavailable=True)
        remove_ml_models(admin, url)


def test_start_puts_the_ml_roles_in_place_on_a_running_cluster(secured):
    """The yml files load only with the security index; `start` on a running cluster (a cluster first
    started without the ML plugins, say) puts the project's roles and mappings through the REST API."""
    require_ml(secured)
    mapping = "/_plugins/_security/api/rolesmapping/retrosearch_ml_user"
    assert cluster.admin_request(secured, mapping, method="DELETE")[0] == 200
    assert cluster.admin_request(secured, mapping)[0] == 404
    started = run_as(
        secured, None, "opensearch", "start", "--nodes", "3", "--secure", "--with-ml", "--port", str(PORT)
    )
    assert "3 nodes" in started.stdout
    users = admin_json(secured, mapping)["retrosearch_ml_user"]["users"]
    assert sorted(users) == ["searcher", "writer"]


def _post(served, **body) -> httpx.Response:
    return httpx.post(f"{served.url}/search", json=body, headers=served.headers, timeout=120)


def _ids(hits: list[dict]) -> list[str]:
    return [h["id"] for h in hits]


def test_serve_as_searcher_answers_the_dense_hits(secured, served, tiny_bert):
    assert httpx.post(f"{served.url}/search", json={"query": "x"}, timeout=30).status_code == 401
    query = served.queries[0]
    answer = _post(served, query=query, k=5)
    assert answer.status_code == 200, answer.text
    expected = run_as(
        secured,
        "searcher",
        "search",
        "--index-name",
        INDEX,
        *url_args(secured),
        "--model",
        str(tiny_bert),
        "--json-out",
        "-",
        "-k",
        "5",
        query,
    )
    assert _ids(answer.json()["hits"]) == _ids(json.loads(expected.stdout)[0]["hits"])
    settings = admin_json(secured, f"/{INDEX}/_settings")[INDEX]["settings"]["index"]
    assert settings["number_of_replicas"] == "1"  # a multi-node cluster: one replica by default
    environ = Path(f"/proc/{served.proc.pid}/environ").read_bytes().decode(errors="replace")
    assert "RETROSEARCH_OPENSEARCH_USER=searcher" in environ
    assert not any(p in environ for p in passwords(secured).values())  # a file name, not the password
    assert not any(p in served.log.read_text() for p in [*passwords(secured).values(), served.key])


def test_connect_stores_the_api_key_in_the_connector(served):
    connection = served.connection
    for mode in ("query", "passage"):
        model = served.admin.plugins.ml.get_model(model_id=connection[f"{mode}_model_id"])
        assert model["model_state"] == "DEPLOYED" and model["algorithm"] == "REMOTE"
        connector = served.admin.transport.perform_request(
            "GET", f"/_plugins/_ml/connectors/{model['connector_id']}"
        )
        assert served.key not in json.dumps(connector)  # stored encrypted, never given back
    settings = served.admin.indices.get_settings(index=INDEX)[INDEX]["settings"]["index"]
    assert settings["search"]["default_pipeline"] == connection["pipelines"]["search"]
    assert settings["default_pipeline"] == connection["pipelines"]["ingest"]


def test_neural_queries_over_https_return_the_dense_hits(secured, served):
    searcher = client_as(secured, "searcher")
    queries = served.queries[:10]
    dense = _post(served, query=queries, k=10).json()["results"]
    via_service = _post(served, query=queries, k=10, mode="neural")
    assert via_service.status_code == 200, via_service.text
    for query, mine, ours in zip(queries, dense, via_service.json()["results"]):
        body = {
            "size": 10,
            "_source": False,
            "query": {
                "neural": {
                    "embedding": {"query_text": query, "k": 10, "method_parameters": {"ef_search": 256}}
                }
            },
        }
        theirs = [h["_id"] for h in searcher.search(index=INDEX, body=body)["hits"]["hits"]]
        assert theirs == _ids(mine["hits"]) == _ids(ours["hits"]), query


def test_hybrid_queries_as_searcher(secured, served):
    searcher = client_as(secured, "searcher")
    query = served.queries[1]
    body = {
        "size": 10,
        "_source": False,
        "query": {
            "hybrid": {
                "queries": [
                    {"match": {"text": query}},
                    {
                        "neural": {
                            "embedding": {
                                "query_text": query,
                                "k": 10,
                                "method_parameters": {"ef_search": 256},
                            }
                        }
                    },
                ]
            }
        },
    }
    hits = searcher.search(index=INDEX, body=body)["hits"]["hits"]
    assert len(hits) == 10 and all(0.0 <= h["_score"] <= 1.0 for h in hits)
    # The service's own hybrid mode reads the pipeline connect made; the searcher may not create one.
    ours = _post(served, query=query, k=10, mode="hybrid")
    assert ours.status_code == 200, ours.text
    assert len(ours.json()["hits"]) == 10


def test_the_default_ingest_pipeline_embeds_a_document_written_without_a_vector(secured, served):
    writer = client_as(secured, "writer")
    doc = {
        "title": "Vitamin D and bone",
        "text": "Supplementation raised bone mineral density in older adults.",
    }
    writer.index(index=INDEX, id="via-pipeline", body=doc, refresh=True)
    stored = served.admin.get(index=INDEX, id="via-pipeline")["_source"]
    assert stored["title"] == doc["title"] and "embedding" in stored
    separator = httpx.get(f"{served.url}/info", headers=served.headers, timeout=30).json()["title_separator"]
    vector = httpx.post(
        f"{served.url}/embed",
        json={"texts": [f"{doc['title']}{separator}{doc['text']}"], "mode": "passage"},
        headers=served.headers,
        timeout=60,
    ).json()["vectors"][0]
    assert cosine(stored["embedding"], vector) >= 0.9999
    served.admin.delete(index=INDEX, id="via-pipeline", refresh=True)


def test_a_node_killed_under_search_load_fails_no_request_but_with_503(secured, served):
    """8 clients, dense and neural, at least 1,000 requests; a data node SIGKILLed, restarted, green again."""
    result = faults.query_load_with_node_kill(
        secured,
        served.url,
        served.queries,
        clients=8,
        modes=("dense", "neural"),
        min_requests=1000,
        before=150,
        after=150,
        api_key=served.key,
    )
    print("\n" + json.dumps(result, indent=1))
    assert result["requests"] >= 1000
    assert result["not_503_with_reason"] == 0, result["examples"]  # never a 500, never a 503 without a reason
    assert all(result["by_mode"][m]["total"]["requests"] > 0 for m in ("dense", "neural"))
    assert result["phases"]["after"]["failed"] == 0 and result["phases"]["after"]["requests"] > 0
    assert result["phases"]["before"]["failed"] == 0


def test_the_whole_cluster_stopped_and_started_under_the_service(secured, served):
    """503 with a reason while no node runs; 200 again once it is back, the service never restarted."""
    result = faults.cluster_restart_under_service(secured, served.url, served.queries[0], api_key=served.key)
    print("\n" + json.dumps(result, indent=1))
    assert result["before"] == 200
    assert result["while_down"] == [503] and all(result["down_reasons"])
    assert result["after"] == 200
    assert served.proc.poll() is None
