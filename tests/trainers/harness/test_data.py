"""Training text: JSONL, Parquet, BEIR folders and saved datasets, then tokenized and cut into blocks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from retrosearch.core.collections import CollectionError
from retrosearch.trainers.harness.data import PackedTokens, pack_documents, read_texts, split_document

RECORDS = [
    {"title": "Heat transfer", "text": "The boundary layer thickens. Flow separates."},
    {"title": "", "text": "Dense vector search."},
    {"text": "No title field here."},
]
EXPECTED = [
    "Heat transfer The boundary layer thickens. Flow separates.",
    "Dense vector search.",
    "No title field here.",
]


def test_jsonl_parquet_beir_and_saved_dataset_read_alike(tmp_path):
    from datasets import Dataset

    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))  # no ids: pretraining needs none
    assert list(read_texts(jsonl)) == EXPECTED
    assert list(read_texts(tmp_path)) == EXPECTED  # a BEIR folder: its corpus.jsonl

    table = [{"title": r.get("title"), "text": r["text"]} for r in RECORDS]
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "corpus.parquet")
    assert list(read_texts(tmp_path / "corpus.parquet")) == EXPECTED

    Dataset.from_list(table).save_to_disk(str(tmp_path / "saved"))
    assert list(read_texts(tmp_path / "saved")) == EXPECTED
    assert list(read_texts(jsonl, title_field=None))[0] == RECORDS[0]["text"]


def test_bad_records_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(CollectionError, match=r"bad.jsonl.*2.*'text'"):
        list(read_texts(path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CollectionError, match="neither a BEIR collection nor a dataset"):
        list(read_texts(tmp_path / "empty"))


def test_split_cuts_after_sentence_ends_in_the_second_half():
    ids = list(range(100, 130))
    ids[7] = ids[16] = ids[27] = 1  # 1 stands for "."
    blocks = split_document(ids, max_tokens=12, boundaries=np.array([1]))
    assert [len(b) for b in blocks] == [8, 9, 11, 2]  # cut after positions 7, 16 and 27
    assert sum(blocks, []) == ids
    early = list(range(100, 130))
    early[2] = 1  # the only end falls in the first half of the window: a hard cut instead of a 3-token block
    assert [len(b) for b in split_document(early, max_tokens=12, boundaries=np.array([1]))] == [12, 12, 6]


def test_pack_keeps_documents_apart_and_drops_short_tails(bert_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(bert_tokenizer_dir))
    texts = ["word " * 50, "dense retrieval", "another short passage about heat transfer in boundary layers"]
    packed = pack_documents(texts, tokenizer, max_tokens=20, min_tokens=3)
    assert isinstance(packed, PackedTokens)
    assert [len(b) for b in packed] == [20, 20, 10, 9]  # "dense retrieval" (2 tokens) is dropped
    assert packed.num_tokens == 59 and len(packed[1:3]) == 2
    assert pack_documents(texts, tokenizer, max_tokens=20, min_tokens=3, max_blocks=2).num_tokens == 40
