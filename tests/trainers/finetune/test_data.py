"""Training groups from BEIR qrels and from the generic JSONL format."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from retrosearch.core.collections import BeirCollection, CollectionError
from retrosearch.trainers.finetune.data import (
    Passage,
    TrainingGroup,
    groups_from_qrels,
    passage_key,
    read_groups,
    sample_group,
    write_groups,
)


def test_groups_from_the_train_split_only(scifact_train: Path) -> None:
    collection = BeirCollection(scifact_train)
    groups = groups_from_qrels(collection, "train")
    qrels = collection.qrels("train")
    assert [g.query_id for g in groups] == list(qrels)
    for group in groups:
        assert {p.id for p in group.positives} == set(qrels[group.query_id])
        assert group.query == collection.queries[group.query_id].text
        assert group.negatives == ()
    with pytest.raises(CollectionError, match="no qrels for split 'test'"):
        groups_from_qrels(collection, "test")


def test_jsonl_accepts_strings_objects_and_aliases(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"query": "q1", "positives": ["p1"], "negatives": [{"text": "n1", "title": "t", "id": "d9", "rank": 31}]}\n'
        "\n"
        '{"query_id": "7", "query": "q2", "pos": [{"text": "p2"}], "neg": ["n2", "n3"]}\n'
    )
    first, second = read_groups(path)
    assert first.positives == (Passage("p1"),)
    assert first.negatives[0] == Passage("n1", "t", "d9") and first.negatives[0].extra == {"rank": 31}
    assert second.query_id == "7" and [n.text for n in second.negatives] == ["n2", "n3"]
    copy = tmp_path / "copy.jsonl"
    write_groups(copy, [first, second])
    assert read_groups(copy) == [first, second]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"query": "q", "positives": []}', "no positives"),
        ('{"positives": ["p"]}', "missing or empty 'query'"),
        ('{"query": "q", "positives": "p"}', "must be a list"),
        ('{"query": "q", "positives": [{"title": "t"}]}', "no non-empty 'text'"),
        ('{"query": "q", "positives": ["p"], "pos": ["p"]}', "both"),
        ('{"query": "q", "positives": ["p"]', "invalid JSON"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "ok", "positives": ["p"]}\n' + line + "\n")
    with pytest.raises(CollectionError, match=reason) as caught:
        read_groups(path)
    assert str(caught.value).startswith(f"{path}:2: ")


def test_sampling_puts_the_positive_first_and_is_seeded() -> None:
    group = TrainingGroup("q", (Passage("p", id="a"), Passage("p2", id="b")), tuple(Passage(f"n{i}") for i in range(5)))
    example = sample_group(group, 4, random.Random(3))
    assert example.passages[0] in group.positives
    assert len(set(example.passages[1:])) == 3 and set(example.passages[1:]) <= set(group.negatives)
    assert example.positive_keys == [passage_key(p) for p in group.positives]
    assert sample_group(group, 4, random.Random(3)) == example
    few = TrainingGroup("q", (Passage("p"),), (Passage("n"),))
    assert sample_group(few, 3, random.Random(0)).passages[1:] == [Passage("n"), Passage("n")]
    with pytest.raises(ValueError, match="has no negatives"):
        sample_group(TrainingGroup("q", (Passage("p"),)), 2, random.Random(0))
