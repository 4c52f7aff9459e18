"""`retrosearch ingest` as a user runs it: bad input modes, Parquet output, eval on an ingested index."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.test_cli import run_cli

GOOD = [{"_id": f"g{i}", "title": "flow", "text": f"the flow over a wing surface {i}", "lang": {"code": "en"}} for i in range(30)]


def _corpus(tmp_path: Path) -> Path:
    lines = [json.dumps(d) for d in GOOD]
    lines.insert(4, '{"_id": "broken", "text": ')
    lines.insert(11, json.dumps({"_id": "g1", "text": "duplicate id"}))
    lines.insert(20, json.dumps({"_id": "no-text"}))
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fail_mode_stops_before_writing_with_file_and_line(tmp_path, tiny_bert):
    corpus, out = _corpus(tmp_path), tmp_path / "out"
    proc = run_cli("ingest", "--corpus", str(corpus), "--model", str(tiny_bert), "--sink", "parquet", "--out", str(out), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{corpus}:5: not valid JSON" in proc.stderr
    assert not out.exists() or not list(out.rglob("*.parquet"))


def test_skip_mode_writes_good_records_and_a_rejects_file(tmp_path, tiny_bert):
    corpus, out, rejects = _corpus(tmp_path), tmp_path / "out", tmp_path / "rejects.jsonl"
    proc = run_cli(
        "ingest", "--corpus", str(corpus), "--model", str(tiny_bert), "--sink", "parquet", "--out", str(out),
        "--on-error", "skip", "--rejects", str(rejects), "--chunk-rows", "8", "--keep-field", "title", "--keep-field", "lang",
    )
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert summary["rejects"] == 3 and summary["rows_written"] == 30 and summary["sink_count"] == 30
    assert "3 records rejected" in proc.stderr
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rows] == [
        (5, "not valid JSON"),
        (12, "duplicate id 'g1'"),
        (21, "missing text field 'text'"),
    ]
    table = pq.read_table(out)
    assert sorted(table.column("id").to_pylist()) == sorted(d["_id"] for d in GOOD)
    assert table.schema.field("vector").type.list_size == 32
    assert set(table.column("lang").to_pylist()) == {json.dumps({"code": "en"})}
    assert {"padding_ratio", "tokens_per_s", "rows_per_s", "seconds"} <= set(summary)


@pytest.mark.integration
def test_eval_on_an_ingested_opensearch_index_matches_the_spine(small_scifact: Path, tmp_path: Path, opensearch_url: str):
    name = "test-ingest-eval"
    run_cli(
        "ingest", "--corpus", str(small_scifact / "corpus.jsonl"), "--sink", "opensearch", "--index-name", name,
        "--opensearch-url", opensearch_url, "--replicas", "0", "--state-dir", str(tmp_path / "state"),
    )
    ingested, spine = tmp_path / "ingested.json", tmp_path / "spine.json"
    run_cli(
        "eval", "--collection", str(small_scifact), "--backend", "opensearch", "--index-name", name,
        "--opensearch-url", opensearch_url, "--json-out", str(ingested), "--quiet",
    )
    run_cli("eval", "--collection", str(small_scifact), "--json-out", str(spine), "--quiet")
    a, b = json.loads(ingested.read_text()), json.loads(spine.read_text())
    assert "encode_corpus" not in a["seconds"]  # the ingested index was searched, not rebuilt
    for key in ("ndcg@10", "mrr@10", "recall@100", "map"):
        assert a[key] == pytest.approx(b[key], abs=0.005)
