"""Figures of the encoder inside OpenSearch (``retrosearch opensearch deploy-model``) on one index.

Run on a quiet machine, against an index built with our ingestion and wired to the local model
(``deploy-model --index-name``); a service connected with ``opensearch connect`` is optional:

    python -m retrosearch.benchmarks.local_model --collection ../shared/data/scifact \\
        --index-name scifact [--service-url http://127.0.0.1:8000 --remote-model-id ID] [--ingest-docs 200]

Prints JSON: NDCG@10 of OpenSearch ``neural`` queries through the local model and of our dense
search over the same index (same efSearch); p50/p99 latency of one ``neural`` query through the
local model, through the remote model and of the service's ``/search`` (same queries, one run);
documents/s of the index's ingest pipeline embedding with the local model (into a scratch copy of
the mapping, deleted afterwards; compare with ``retrosearch bench ingest``); the node's memory.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import numpy as np

from retrosearch.core.collections.beir import BeirCollection
from retrosearch.core.config import OpenSearchSettings, Settings
from retrosearch.core.retrieval.metrics import evaluate_run
from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine


def _latency(call, queries: list[str]) -> dict[str, float]:
    times = []
    for query in queries:
        began = time.perf_counter()
        call(query)
        times.append((time.perf_counter() - began) * 1000)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "n": len(times),
    }


def _neural(model_id: str | None, query: str, k: int, ef_search: int) -> dict[str, Any]:
    clause: dict[str, Any] = {"query_text": query, "k": k, "method_parameters": {"ef_search": ef_search}}
    if model_id:
        clause["model_id"] = model_id
    return {"size": k, "_source": False, "query": {"neural": {"embedding": clause}}}


def measure(
    collection: str,
    index_name: str,
    url: str,
    service_url: str | None,
    remote_model_id: str | None,
    ingest_docs: int,
    split: str = "test",
) -> dict[str, Any]:
    """Every figure the local-model docs table needs, as one dict."""
    # lazy: keeps opensearchpy out of importing this module
    from retrosearch.core.opensearch.client import connect
    from retrosearch.core.opensearch.pipelines import recorded_models

    settings = Settings(opensearch=OpenSearchSettings(url=url))
    client = connect(settings.opensearch)
    ef_search = settings.opensearch.hnsw_ef_search or 256  # what our dense searches of the index use
    mapping = client.indices.get_mapping(index=index_name)[index_name]["mappings"]
    local_id = recorded_models(mapping)["query_model_id"]
    beir = BeirCollection(collection)
    queries = beir.judged_queries(split)
    engine = QueryEngine.open(settings, IndexTarget(index_name=index_name))
    vectors, _ = engine.encode([q.text for q in queries], "query")
    dense = engine.search(vectors, 10)
    runs = {"dense": {}, "neural_local": {}}
    for query, ids, scores in zip(queries, dense.ids, dense.scores):
        runs["dense"][query.id] = dict(zip(ids, map(float, scores)))
        hits = client.search(index=index_name, body=_neural(None, query.text, 10, ef_search))["hits"]["hits"]
        runs["neural_local"][query.id] = {h["_id"]: float(h["_score"]) for h in hits}
    qrels = beir.qrels(split)
    figures: dict[str, Any] = {
        "ndcg@10": {name: evaluate_run(qrels, run)["ndcg@10"] for name, run in runs.items()}
    }

    texts = [q.text for q in queries]

    def search(model_id: str):
        return lambda q: client.search(index=index_name, body=_neural(model_id, q, 10, ef_search))

    latency = {"neural_local": _latency(search(local_id), texts)}
    if remote_model_id:
        latency["neural_remote"] = _latency(search(remote_model_id), texts)
    if service_url:
        import httpx  # lazy: keeps httpx out of importing this module

        with httpx.Client(base_url=service_url, timeout=60) as http:
            latency["service_search"] = _latency(
                lambda q: http.post("/search", json={"query": q, "k": 10}), texts
            )
    figures["latency"] = latency

    if ingest_docs:
        scratch = f"{index_name}-ingest-{uuid.uuid4().hex[:8]}"
        index_settings = client.indices.get_settings(index=index_name)[index_name]["settings"]["index"]
        knn = {"knn": "true", "default_pipeline": index_settings["default_pipeline"], "number_of_replicas": 0}
        client.indices.create(index=scratch, body={"settings": {"index": knn}, "mappings": mapping})
        try:
            docs = beir.corpus[:ingest_docs]
            began = time.perf_counter()
            for doc in docs:  # one at a time: ml-commons embeds one document per call anyway
                client.index(index=scratch, id=doc.id, body={"title": doc.title, "text": doc.text})
            figures["ingest_pipeline_docs_per_s"] = len(docs) / (time.perf_counter() - began)
        finally:
            client.indices.delete(index=scratch, ignore_unavailable=True)

    stats = client.nodes.stats(metric="jvm")["nodes"]
    info = client.nodes.info(metric="process")["nodes"]
    figures["node_memory"] = {
        node["name"]: {
            "rss_bytes": _rss(info[node_id]["process"]["id"]),
            "heap_used_bytes": node["jvm"]["mem"]["heap_used_in_bytes"],
        }
        for node_id, node in stats.items()
    }
    return figures


def _rss(pid: int) -> int | None:
    """The node process's resident memory, when it runs on this machine (OpenSearch reports only virtual)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--index-name", required=True)
    parser.add_argument("--opensearch-url", default="http://127.0.0.1:9250")
    parser.add_argument("--service-url")
    parser.add_argument("--remote-model-id", help="the query model id `opensearch connect --json` printed")
    parser.add_argument("--ingest-docs", type=int, default=200)
    args = parser.parse_args(argv)
    print(
        json.dumps(
            measure(
                args.collection,
                args.index_name,
                args.opensearch_url,
                args.service_url,
                args.remote_model_id,
                args.ingest_docs,
            ),
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
