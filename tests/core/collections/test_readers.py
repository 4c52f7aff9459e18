"""Readers accept good files and reject each kind of bad record with its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrosearch.core.collections import BeirCollection, CollectionError, FieldMap, read_corpus, read_qrels
from tests.conftest import DATA


def _jsonl(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_good_jsonl_with_custom_fields(tmp_path):
    path = _jsonl(
        tmp_path,
        [json.dumps({"doc": 7, "body": "hello", "head": "T", "lang": "en"}), "", json.dumps({"doc": "b", "body": ""})],
    )
    docs = list(read_corpus(path, FieldMap(id="doc", text="body", title="head", keep=("lang",))))
    assert [(d.id, d.title, d.text) for d in docs] == [("7", "T", "hello"), ("b", "", "")]
    assert docs[0].fields == {"lang": "en"}


@pytest.mark.parametrize(
    "bad_line,reason",
    [
        ('{"_id": "x", "text": ', "not valid JSON"),
        ('["_id", "text"]', "expected a JSON object"),
        ('{"text": "no id"}', "missing id field '_id'"),
        ('{"_id": null, "text": "null id"}', "missing id field '_id'"),
        ('{"_id": ["a"], "text": "t"}', "must be a string or an integer"),
        ('{"_id": "x"}', "missing text field 'text'"),
        ('{"_id": "x", "text": 5}', "field 'text' must be a string"),
        ('{"_id": "1", "text": "duplicate"}', "duplicate id '1' (first seen at line 1)"),
        ('{"_id": "  ", "text": "blank id"}', "id field '_id' is empty"),
    ],
)
def test_rejects_bad_line_with_file_and_line_number(tmp_path, bad_line, reason):
    path = _jsonl(tmp_path, ['{"_id": "1", "text": "fine"}', '{"_id": "2", "text": "fine"}', bad_line])
    with pytest.raises(CollectionError) as info:
        list(read_corpus(path))
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}:3: ")
    assert reason in str(info.value)


def test_undecodable_bytes_are_reported(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"_id": "1", "text": "ok"}\n{"_id": "2", "text": "\xff\xfe"}\n')
    with pytest.raises(CollectionError, match=r"c\.jsonl:2: not valid JSON"):
        list(read_corpus(path))


def test_parquet_rows_are_numbered(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"_id": ["a", "b", "c"], "text": ["x", None, "z"], "title": ["", "", ""]}), path)
    with pytest.raises(CollectionError) as info:
        list(read_corpus(path))
    assert info.value.line == 2 and "row 2" in str(info.value) and "missing text field" in str(info.value)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(CollectionError, match="file not found"):
        list(read_corpus(tmp_path / "nope.jsonl"))
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(CollectionError, match="unknown corpus format"):
        list(read_corpus(tmp_path / "c.csv"))


def test_qrels_errors_name_the_line(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tabc\n")
    with pytest.raises(CollectionError, match=r"test\.tsv:3: score 'abc' is not a number"):
        read_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(CollectionError, match=r"test\.tsv:2: expected 3 tab-separated columns"):
        read_qrels(path)


def test_real_beir_collection_counts():
    scifact = BeirCollection(DATA / "scifact")
    assert len(scifact.corpus) == 5183
    assert len(scifact.queries) == 1109
    test = scifact.qrels("test")
    assert len(test) == 300 and sum(len(v) for v in test.values()) == 339
    assert scifact.splits() == ["test", "train"]
    cranfield = BeirCollection(DATA / "cranfield").qrels("test")
    assert {g for docs in cranfield.values() for g in docs.values()} == {0, 1, 2, 3, 4}
    with pytest.raises(CollectionError, match="no qrels for split 'dev'"):
        scifact.qrels("dev")
