"""The fault runs' bookkeeping: phases around a fault, which failures break the promise (anything but a
503 with a reason), ids lost and doubled, and the guide's table built from a run's result."""

from __future__ import annotations

from retrosearch.benchmarks import opensearch_faults as faults
from retrosearch.benchmarks.opensearch_cluster import markdown


def _requests() -> list[faults.Request]:
    R = faults.Request
    return [
        R(0.0, 0.010, 200, "dense"),
        R(1.0, 0.020, 200, "neural"),
        R(10.0, 0.500, 503, "dense", "OpenSearch index 'x' is unreachable"),
        R(11.0, 0.100, 200, "dense"),
        R(12.0, 0.300, 500, "neural", "search failed"),
        R(13.0, 0.200, 503, "neural", None),
        R(30.0, 0.015, 200, "dense"),
    ]


def test_phases_split_at_the_fault_and_the_recovery():
    split = faults.phases(_requests(), fault_at=5.0, recovered_at=20.0)
    assert [split[p]["requests"] for p in ("before", "during", "after")] == [2, 4, 1]
    assert split["during"]["failed"] == 3 and split["during"]["failed_by_status"] == {"503": 2, "500": 1}
    assert split["during"]["p50_ms"] == 100.0  # successes only
    assert split["before"]["failed"] == 0 and split["after"]["p99_ms"] == 15.0
    assert faults.latency_stats([])["p50_ms"] is None


def test_a_500_or_a_503_without_reason_breaks_the_promise():
    found = faults.failures(_requests())
    assert found["not_503_with_reason"] == 2
    assert found["examples"]["500"] == ["neural: search failed"]


def test_ids_lost_and_doubled():
    checked = faults.id_check(["a", "b", "c"], ["a", "a", "c", "d"])
    assert (checked["lost"], checked["duplicated"]) == (1, 1)
    assert checked["lost_examples"] == ["b"] and checked["duplicated_examples"] == ["a"]


def test_the_guides_tables():
    stats = faults.latency_stats(_requests())
    split = faults.phases(_requests(), 5.0, 20.0)
    result = {
        "model": "minilm",
        "docs": 1400,
        "corpus": "cranfield/corpus.jsonl",
        "cpus": 2,
        "ingest": {
            "plain": {"docs": 1400, "seconds": 40.0, "docs_per_s": 35.0},
            "secure": {"docs": 1400, "seconds": 56.0, "docs_per_s": 25.0},
        },
        "query_kill": {
            "clients": 8,
            "green_after_restart_s": 61.5,
            "by_mode": {"dense": {"total": stats, **split}, "neural": {"total": stats, **split}},
        },
        "ingest_kill": {
            "returncode": 0,
            "expected": 1400,
            "lost": 0,
            "duplicated": 0,
            "green_after_restart_s": 70.2,
        },
        "cluster_restart": {
            "while_down": [503],
            "green_after_start_s": 48.0,
            "answering_200_after_start_s": 49.5,
        },
    }
    table = markdown(result)
    assert "| 3 nodes, TLS + users, 1 replica | 1400 | 56.0 | 25.0 |" in table
    neural = "| /search load, neural (8 clients in all) | 7 | 2 x HTTP 503, 1 x HTTP 500 | 15.0 / 19.9 |"
    assert neural in table
    assert "| 0 / 0 | 70.2 s |" in table and "HTTP 503 while down" in table
