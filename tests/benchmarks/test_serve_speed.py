"""``retrosearch bench serve`` and its naive baseline server, run on a tiny model and a small collection.

The figures are not judged (timings here mean nothing); what is checked is that the benchmark's
measuring code runs end to end and that what it reports holds together: every request counted and
answered, latencies positive and ordered, rates and ratios computed from the reported figures, and
the naive server answering exactly what our service answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.serve.http_helpers import run_cli


@pytest.fixture(scope="module")
def tiny_index(small_scifact: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-serve") / "index"
    run_cli("index", "--collection", str(small_scifact), "--model", str(tiny_bert), "--out", str(out),
            "--quiet")
    return out


def _queries(collection: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (collection / "queries.jsonl").read_text().splitlines()]


def test_naive_server_answers_what_the_service_answers(tiny_index: Path, small_scifact: Path):
    from fastapi.testclient import TestClient

    from retrosearch.benchmarks.naive_server import build_app
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    queries = _queries(small_scifact)[:5]
    engine = QueryEngine.open(Settings(), IndexTarget(index_dir=tiny_index))
    with TestClient(build_app(str(tiny_index))) as naive, TestClient(create_app(Settings(), engine)) as ours:
        assert naive.get("/readyz").status_code == 200
        for query in queries:
            theirs = naive.post("/search", json={"query": query, "k": 5})
            mine = ours.post("/search", json={"query": query, "k": 5})
            assert theirs.status_code == mine.status_code == 200
            naive_hits, our_hits = theirs.json()["hits"], mine.json()["hits"]
            assert [h["id"] for h in naive_hits] == [h["id"] for h in our_hits] and len(naive_hits) == 5
            assert [h["rank"] for h in naive_hits] == [1, 2, 3, 4, 5]
            assert [h["score"] for h in naive_hits] == pytest.approx([h["score"] for h in our_hits], abs=1e-4)


def _check_run(run: dict, requests: int) -> None:
    """One closed-loop measurement: every request counted and answered 200, figures consistent."""
    assert run["requests"] == requests and run["statuses"] == {"200": requests}
    assert 0 < run["p50_ms"] <= run["p99_ms"] and run["mean_ms"] > 0
    assert run["qps"] == pytest.approx(requests / run["seconds"])


def test_bench_serve_reports_every_request_and_consistent_figures(tiny_index: Path, small_scifact: Path,
                                                                   tiny_bert: Path, tmp_path: Path):
    out = tmp_path / "serve.json"
    run_cli("bench", "serve", "--collection", str(small_scifact), "--index", str(tiny_index),
            "--model", str(tiny_bert), "--concurrency", "1,2", "--requests", "10", "--soak", "40", "--skip-ray",
            "--overload-seconds", "2", "--overload-bound", "2", "--json-out", str(out))
    payload = json.loads(out.read_text())
    assert payload["queries"] == len(_queries(small_scifact))
    assert payload["documents"] == len((small_scifact / "corpus.jsonl").read_text().splitlines())
    assert set(payload["results"]) == {"a_raw", "b_naive", "c_service"}

    raw = payload["results"]["a_raw"]
    assert raw["requests"] == 10 and 0 < raw["p50_ms"] <= raw["p99_ms"]
    assert raw["qps"] == pytest.approx(1000.0 / raw["mean_ms"])  # one request at a time: rate = 1 / mean
    assert raw["bare_forward_p50_ms"] > 0
    for name in ("b_naive", "c_service"):
        levels = payload["results"][name]["levels"]
        assert list(levels) == ["1", "2"]
        _check_run(levels["1"], 10)
        _check_run(levels["2"], 60)  # at least 30 requests per client above one client
        assert levels["2"]["concurrency"] == 2

    c, b = payload["results"]["c_service"]["levels"], payload["results"]["b_naive"]["levels"]
    assert payload["ratios"]["c p50@1 / a p50"] == pytest.approx(c["1"]["p50_ms"] / raw["p50_ms"])
    assert payload["ratios"]["c qps@2 / b qps@2"] == pytest.approx(c["2"]["qps"] / b["2"]["qps"])

    soak = payload["soak"]
    assert soak["requests"] == 40 and soak["statuses"] == {"200": 40} and soak["errors_5xx"] == 0
    assert soak["concurrency"] == 2 and len(soak["rss_samples_mb"]) == 5
    assert soak["rss_before_mb"] > 0 and soak["rss_after_mb"] > 0

    overload = payload["overload"]
    assert overload["offered_qps"] == pytest.approx(2.0 * c["2"]["qps"])
    assert overload["sent"] == int(overload["offered_qps"] * 2) and overload["errors_5xx"] == 0
    # Every answer was a 200 or a 429 (how many of each depends on speed), and the server counted
    # the same refusals as the client saw.
    assert overload["accepted"] + overload["rejected"] == overload["sent"]
    assert overload["rejections_counted_by_server"] == overload["rejected"]
    if overload["rejected"]:
        assert overload["retry_after_s"]["min"] >= 1
    assert overload["healthy_after"] == {"healthz": 200, "readyz": 200, "search": 200}

    report = out.with_suffix(".md").read_text()
    assert report.count("| c. retrosearch serve |") == 2 and "Soak: 40 requests at 2 clients" in report
    assert "Overload: " in report and f"{overload['rejected']} refused with 429" in report
    assert out.with_suffix(".png").stat().st_size > 0
