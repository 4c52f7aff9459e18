"""The query service over a real OpenSearch k-NN index: parity with `retrosearch search`, filters and
stored fields, and a backend that goes away and comes back while the service keeps running."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from retrosearch.local.opensearch import server
from retrosearch.local.opensearch.node_config import ServerSettings
from tests.plugin.serve.http_helpers import cli_search, free_port, run_cli, serving

pytestmark = pytest.mark.integration

def _index_into(url: str, name: str, collection: Path) -> None:
    run_cli("index", "--collection", str(collection), "--backend", "opensearch", "--opensearch-url", url,
            "--index-name", name, "--replicas", "0", "--quiet")


def _engine(url: str, name: str):
    from retrosearch.core.config import OpenSearchSettings, Settings
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    settings = Settings(opensearch=OpenSearchSettings(url=url, request_timeout_s=5))
    return QueryEngine.open(settings, IndexTarget(index_name=name))


def test_search_equals_cli_search_with_filter_and_fields(opensearch_url: str, small_scifact: Path, small_queries):
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app

    name = f"serve-{uuid.uuid4().hex[:8]}"
    _index_into(opensearch_url, name, small_scifact)
    try:
        queries = small_queries[:5]
        expected = cli_search("--index-name", name, "--opensearch-url", opensearch_url, "-k", "10", *queries)
        engine = _engine(opensearch_url, name)
        with serving(create_app(Settings(), engine)) as url:
            assert httpx.get(f"{url}/readyz").status_code == 200
            got = httpx.post(f"{url}/search", json={"query": queries, "k": 10}, timeout=60).json()["results"]
            for mine, theirs in zip(got, expected):
                assert [h["id"] for h in mine["hits"]] == [h["id"] for h in theirs["hits"]]
                assert np.allclose([h["score"] for h in mine["hits"]], [h["score"] for h in theirs["hits"]], atol=1e-4)
            top = [h["id"] for h in got[0]["hits"]]
            allowed = top[3:6]
            body = {"query": queries[0], "k": 10, "filter": {"ids": {"values": allowed}}, "fields": ["title"]}
            filtered = httpx.post(f"{url}/search", json=body, timeout=60).json()["hits"]
            titles = {json.loads(line)["_id"]: json.loads(line)["title"]
                      for line in (small_scifact / "corpus.jsonl").read_text().splitlines()}
            assert [h["id"] for h in filtered] == allowed  # same order as unfiltered, others removed
            assert [h["fields"]["title"] for h in filtered] == [titles[i] for i in allowed]
            bad = httpx.post(f"{url}/search", json={"query": "x", "filter": {"no_such_query": {}}}, timeout=60)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "filter"
    finally:
        httpx.delete(f"{opensearch_url}/{name}")


def test_backend_down_is_503_and_the_service_recovers_by_itself(opensearch_url: str, small_scifact: Path, small_queries):
    """A throwaway node of our own is stopped under a running service and started again."""
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app

    version = httpx.get(opensearch_url).json()["version"]["number"]
    settings = ServerSettings(version=version, port=free_port(), heap="512m")
    settings.run_dir = settings.version_dir / "run" / f"serve-recovery-{settings.port}"
    # start() assembles the k-NN-only distribution on first use (from the Maven cache: seconds).
    try:
        server.start(settings, wait_s=240)
        _index_into(settings.url, "recovery", small_scifact)
        engine = _engine(settings.url, "recovery")
        body = {"query": small_queries[0], "k": 5}
        with serving(create_app(Settings(), engine)) as url:
            before = httpx.post(f"{url}/search", json=body, timeout=60)
            assert before.status_code == 200
            server.stop(settings, grace_s=30)
            ready = httpx.get(f"{url}/readyz", timeout=60)
            assert ready.status_code == 503 and "unreachable" in ready.json()["error"]["message"]
            down = httpx.post(f"{url}/search", json=body, timeout=60)
            assert down.status_code == 503 and down.json()["error"]["type"] == "service_unavailable"
            assert httpx.get(f"{url}/healthz").status_code == 200
            server.start(settings, wait_s=240)
            deadline = time.monotonic() + 120
            while httpx.get(f"{url}/readyz", timeout=60).status_code != 200:
                assert time.monotonic() < deadline, "the service did not see OpenSearch come back"
                time.sleep(1)
            after = httpx.post(f"{url}/search", json=body, timeout=60)
            assert after.status_code == 200
            assert [h["id"] for h in after.json()["hits"]] == [h["id"] for h in before.json()["hits"]]
    finally:
        server.stop(settings, grace_s=10)
        shutil.rmtree(settings.run_dir, ignore_errors=True)
