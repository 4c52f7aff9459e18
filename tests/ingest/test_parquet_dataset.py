"""`--sink parquet --out OUT`: OUT is a Parquet dataset that pandas and pyarrow read as it is, the
resume state sits in OUT/_ingest/ where they do not look, and reruns (also after a kill) leave
every document in it exactly once."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tests.ingest.test_resume import DOCS, _finish, _ids, _kill_midway, corpus  # noqa: F401 (fixture)
from tests.test_cli import run_cli

DIM = 32  # tiny_bert's hidden size


def _ingest(collection: Path, model: Path, out: Path, *extra: str) -> dict:
    proc = run_cli(
        "ingest", "--corpus", str(collection / "corpus.jsonl"), "--model", str(model), "--sink", "parquet", "--out", str(out),
        "--chunk-rows", "20", "--keep-field", "title", *extra,
    )
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def _read(out: Path) -> tuple[pd.DataFrame, list[str]]:
    """OUT read by pandas and by pyarrow.dataset, which must agree; returns (frame, ids)."""
    frame = pd.read_parquet(out)
    table = ds.dataset(out, format="parquet").to_table()
    assert sorted(frame["id"]) == sorted(table.column("id").to_pylist())
    assert table.schema.field("vector").type.list_size == DIM
    assert {len(v) for v in frame["vector"]} == {DIM}
    return frame, list(frame["id"])


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_out_is_a_parquet_dataset_and_a_rerun_leaves_it_unchanged(small_scifact, tiny_bert, tmp_path):
    out = tmp_path / "vectors"
    expected = _ids(small_scifact / "corpus.jsonl")
    first = _ingest(small_scifact, tiny_bert, out)
    assert first["rows_written"] == len(expected) and first["sink_count"] == len(expected)
    assert first["sink_dataset"] == str(out) and Path(first["state"]).parent == out / "_ingest"

    # Only part files (and the state folder readers skip) sit in OUT; no temporary files are left.
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "_ingest" and all(n.startswith("part-") and n.endswith(".parquet") for n in names[1:])
    assert len(names) - 1 == first["sink_parts"] >= 4
    frame, ids = _read(out)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert frame["title"].notna().any()
    before = _snapshot(out)

    again = _ingest(small_scifact, tiny_bert, out)
    assert again["rows_written"] == 0 and again["rows_already_done"] == len(expected)
    assert again["sink_count"] == len(expected) and again["state"] == first["state"]
    assert _snapshot(out) == before
    assert sorted(_read(out)[1]) == sorted(ids)

    # A part file renamed into place whose record was never written (a write killed in between, then
    # retried) and a temporary file are stray: the next run deletes them, so nothing is read twice.
    part = next(p for p in sorted(out.glob("part-*.parquet")))
    chunk = part.name[len("part-") : -len("-") - 32 - len(".parquet")]
    stray = out / f"part-{chunk}-{uuid.uuid4().hex}.parquet"
    shutil.copy(part, stray)
    tmp = out / f".part-{chunk}-{uuid.uuid4().hex}.parquet.tmp"
    tmp.write_bytes(b"half a file")
    assert len(pd.read_parquet(out)) == len(expected) + pq.ParquetFile(part).metadata.num_rows
    third = _ingest(small_scifact, tiny_bert, out)
    assert third["rows_written"] == 0 and not stray.exists() and not tmp.exists()
    assert _snapshot(out) == before


def test_a_changed_input_replaces_the_dataset(small_scifact, tiny_bert, tmp_path):
    out, smaller = tmp_path / "vectors", tmp_path / "smaller"
    smaller.mkdir()
    lines = (small_scifact / "corpus.jsonl").read_text().splitlines()[:30]
    (smaller / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    _ingest(small_scifact, tiny_bert, out)
    summary = _ingest(smaller, tiny_bert, out)
    assert summary["rows_written"] == 30 and summary["sink_count"] == 30
    assert [p.name for p in (out / "_ingest").iterdir()] == [Path(summary["state"]).name]
    ids = _read(out)[1]
    assert sorted(ids) == sorted(_ids(smaller / "corpus.jsonl"))


def test_an_old_layout_folder_is_refused_with_one_line(small_scifact, tiny_bert, tmp_path):
    out = tmp_path / "vectors"
    (out / "parts" / "0000-000000000001").mkdir(parents=True)
    (out / "plan.json").write_text("{}")
    proc = run_cli(
        "ingest", "--corpus", str(small_scifact / "corpus.jsonl"), "--model", str(tiny_bert), "--sink", "parquet",
        "--out", str(out), check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "old layout" in proc.stderr and "delete it or choose another --out" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["parts", "plan.json"]  # nothing touched


def test_parquet_sink_resumes_after_kill(corpus, tiny_bert, tmp_path):  # noqa: F811 (fixture)
    out = tmp_path / "vectors"
    command = [
        sys.executable, "-m", "retrosearch.cli", "ingest", "--corpus", str(corpus), "--model", str(tiny_bert),
        "--chunk-rows", "10", "--block-rows", "10", "--write-concurrency", "1", "--sink", "parquet",
        "--out", str(out),
    ]
    recorded = _kill_midway(command, out / "_ingest")
    assert 0 < recorded < DOCS // 10, "the kill was meant to land mid-way"
    # Mid-way OUT is readable already: a killed write leaves only a hidden temporary file.
    ids = pq.read_table(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) < _ids(corpus)
    summary = _finish(command, tmp_path)
    assert summary["rows_already_done"] >= 10 and summary["rows_already_done"] + summary["rows_written"] == DOCS
    ids = _read(out)[1]
    assert len(ids) == DOCS and set(ids) == _ids(corpus)
    again = _finish(command, tmp_path)
    assert again["rows_written"] == 0 and again["rows_already_done"] == DOCS and again["sink_count"] == DOCS
    assert sorted(_read(out)[1]) == sorted(ids)
