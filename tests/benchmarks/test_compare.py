"""bench compare on two tiny result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from retrosearch.benchmarks.compare import compare, flatten, kind_of

OLD = {"collections": {"scifact": [{"method": "bm25", "ndcg@10": 0.65, "search_seconds": 4.0},
                                   {"method": "dense", "ndcg@10": 0.64}]},
       "serve": {"p50_ms": 10.0, "queries_per_s": 100.0}, "docs": 5183}


def _new(**changes):
    new = json.loads(json.dumps(OLD))
    rows = {r["method"]: r for r in new["collections"]["scifact"]}
    for key, value in changes.items():
        if key in rows:
            rows[key]["ndcg@10"] = value
        else:
            new["serve"][key] = value
    new["collections"]["scifact"].reverse()  # rows line up by method, not position
    return new


def test_flatten_keys_rows_by_method_and_kinds_come_from_names():
    flat = flatten(OLD)
    assert flat["collections/scifact/bm25/ndcg@10"] == 0.65 and flat["docs"] == 5183
    assert [kind_of(p) for p in ("a/ndcg@10", "a/queries_per_s", "a/p50_ms", "a/search_seconds")] == [
        "quality", "rate", "latency", "other"]


def test_drops_beyond_the_thresholds_are_worse():
    assert not any(c.worse for c in compare(OLD, _new(bm25=0.645, p50_ms=10.5)))
    worse = {c.path for c in compare(OLD, _new(dense=0.62, p50_ms=12.0, queries_per_s=80.0)) if c.worse}
    assert worse == {"collections/scifact/dense/ndcg@10", "serve/p50_ms", "serve/queries_per_s"}
    assert not any(c.worse for c in compare(OLD, _new(dense=0.70, p50_ms=5.0)))  # better is never flagged


def test_the_command_exits_1_on_a_drop(tmp_path: Path):
    old, same, worse = tmp_path / "old.json", tmp_path / "same.json", tmp_path / "worse.json"
    old.write_text(json.dumps(OLD))
    same.write_text(json.dumps(_new(bm25=0.651)))
    worse.write_text(json.dumps(_new(bm25=0.5)))
    run = lambda a, b: subprocess.run([sys.executable, "-m", "retrosearch.cli", "bench", "compare", str(a), str(b)],  # noqa: E731
                                      capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    ok, bad = run(old, same), run(old, worse)
    assert ok.returncode == 0 and "0 worse" in ok.stdout
    assert bad.returncode == 1 and "WORSE" in bad.stdout and "bm25" in bad.stdout
