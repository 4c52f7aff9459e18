"""Planning: validation with file and line, skip mode, chunking, formats."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrosearch.ingest.plan import plan_ingest
from retrosearch.ingest.source import read_chunk
from retrosearch.core.collections import CollectionError, FieldMap

GOOD = [json.dumps({"_id": str(i), "title": f"t{i}", "text": f"text {i}"}) for i in range(10)]
BAD = {
    3: '{"_id": "x3", "text": ',  # undecodable
    5: '{"title": "no id", "text": "t"}',
    7: '{"_id": 7, "text": 12}',  # wrong type
    9: '{"_id": "1", "text": "dup"}',  # duplicate of line 2
    10: json.dumps({"_id": "big", "text": "x" * 500}),  # oversize with max_text_chars=100
}


def _corpus(tmp_path):
    lines = list(GOOD)
    for line, text in BAD.items():
        lines.insert(line - 1, text)
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line", sorted(BAD))
def test_fail_mode_names_file_and_line(tmp_path, line):
    path = tmp_path / "c.jsonl"
    lines = list(GOOD)
    lines.insert(line - 1, BAD[line])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CollectionError) as info:
        plan_ingest([path], max_text_chars=100)
    assert info.value.line == line and str(info.value).startswith(f"{path}:{line}: ")


def test_skip_mode_lists_rejects_and_chunks_hold_only_good_rows(tmp_path):
    path = _corpus(tmp_path)
    plan = plan_ingest([path], on_error="skip", max_text_chars=100, chunk_rows=4)
    assert [r.line for r in plan.rejects] == sorted(BAD)
    reasons = {r.line: r.reason for r in plan.rejects}
    assert "not valid JSON" in reasons[3] and "missing id" in reasons[5] and "must be a string" in reasons[7]
    assert "duplicate id '1'" in reasons[9] and "exceeds --max-text-chars" in reasons[10]
    assert plan.good_rows == 10 and plan.total_records == 15
    ids = [row for chunk in plan.chunks for row in read_chunk(chunk, FieldMap()).column("id").to_pylist()]
    assert ids == [str(i) for i in range(10)]
    assert len({c.key for c in plan.chunks}) == len(plan.chunks) >= 3


def test_parquet_and_hf_dataset_inputs(tmp_path):
    rows = {"doc_id": [f"d{i}" for i in range(25)], "body": [f"body {i}" for i in range(25)]}
    pq.write_table(pa.table(rows), tmp_path / "c.parquet")
    from datasets import Dataset

    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "hf"))
    fields = FieldMap(id="doc_id", text="body", title=None)
    for source in (tmp_path / "c.parquet", tmp_path / "hf"):
        plan = plan_ingest([source], fields, chunk_rows=10)
        assert [c.rows for c in plan.chunks] == [10, 10, 5]
        ids = [i for c in plan.chunks for i in read_chunk(c, fields).column("id").to_pylist()]
        assert ids == rows["doc_id"]


def test_fingerprint_changes_when_input_changes(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(GOOD) + "\n")
    first = plan_ingest([path]).fingerprint
    assert plan_ingest([path]).fingerprint == first
    path.write_text("\n".join(GOOD[:5]) + "\n")
    assert plan_ingest([path]).fingerprint != first
