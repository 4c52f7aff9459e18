"""bench report on a tiny run: methods and ANN on a small real collection, then the Markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_report_runs_the_missing_parts_and_reuses_them(small_scifact: Path, opensearch_url: str, tmp_path: Path):
    out = tmp_path / "report"
    env = {**os.environ, "COLUMNS": "200", "RETROSEARCH_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "retrosearch.cli", "bench", "report", "--collection", str(small_scifact),
            "--out", str(out), "--opensearch-url", opensearch_url, "--part", "methods", "--part", "ann",
            "--scale", "3000"]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    methods = json.loads((out / "methods.json").read_text())
    rows = {r["method"]: r for r in next(iter(methods["collections"].values()))}
    assert {"bm25", "dense faiss-flat", "dense faiss-hnsw", "dense opensearch", "rrf bm25+dense",
            "hybrid min_max w=0.5", "hybrid l2 w=0.3"} <= rows.keys()
    assert rows["dense faiss-flat"]["ndcg@10"] == pytest.approx(rows["dense opensearch"]["ndcg@10"], abs=1e-3)
    ann = json.loads((out / "ann.json").read_text())
    exact = [p for p in ann["points"] if p["backend"] == "faiss-flat"]
    assert {p["scale"] for p in exact} == {"real", "synthetic"} and all(p["recall_at_10"] == 1.0 for p in exact)
    assert any(p["backend"] == "opensearch-lucene" for p in ann["points"])
    report = (out / "report.md").read_text()
    for expected in ("# RetroSearch benchmark report", "Machine:", "commit", "## Retrieval methods",
                     "| hybrid min_max w=0.5 |", "![NDCG@10 per method and collection](methods.png)",
                     "## Approximate search", "![recall@10 against queries/s](ann.png)"):
        assert expected in report
    assert (out / "methods.png").stat().st_size > 1000 and (out / "ann.png").stat().st_size > 1000
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "methods: reusing" in again.stdout and "ann: reusing" in again.stdout
    bad = subprocess.run([*argv[:-6], "--part", "nonsense"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "nonsense" in bad.stderr
