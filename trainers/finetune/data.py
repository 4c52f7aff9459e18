"""Training groups for contrastive fine-tuning: one query, its positives and its hard negatives.

Two sources give the same :class:`TrainingGroup`:

* a BEIR split (``qrels/<split>.tsv`` plus ``queries.jsonl`` and ``corpus.jsonl``): positives are
  the judged documents with a positive grade; negatives come from mining
  (:mod:`retrosearch.trainers.finetune.mining`) or from the batch alone;
* a JSONL file, one group a line: ``{"query": str, "positives": [...], "negatives": [...]}``
  where each passage is a string or ``{"text": ..., "title": ..., "id": ...}``. ``pos``/``neg``
  (the FlagEmbedding spelling) and an optional ``query_id`` are accepted. Mined files are in this
  format too, with ranks and scores kept on each negative for inspection.

Errors name the file and line through :class:`~retrosearch.core.collections.CollectionError`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from retrosearch.core.collections import BeirCollection, CollectionError
from retrosearch.core.collections.records import Document


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage as the model sees it (title joined in front by the encoder's formatter)."""

    text: str
    title: str = ""
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_document(cls, doc: Document, **extra: Any) -> "Passage":
        """The passage of a corpus document."""
        return cls(text=doc.text, title=doc.title, id=doc.id, extra=dict(extra))

    def as_json(self) -> dict[str, Any]:
        """The JSONL form (id and title only when present)."""
        out: dict[str, Any] = {"id": self.id} if self.id else {}
        if self.title:
            out["title"] = self.title
        out["text"] = self.text
        return {**out, **self.extra}


@dataclass(frozen=True, slots=True)
class TrainingGroup:
    """One query with at least one positive and any number of hard negatives."""

    query: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...] = ()
    query_id: str = ""

    def as_json(self) -> dict[str, Any]:
        """The JSONL form read back by :func:`read_groups`."""
        out: dict[str, Any] = {"query_id": self.query_id} if self.query_id else {}
        out["query"] = self.query
        out["positives"] = [p.as_json() for p in self.positives]
        out["negatives"] = [n.as_json() for n in self.negatives]
        return out


def passage_key(passage: Passage) -> int:
    """A stable 63-bit key of a passage: its id when it has one, else its title and text."""
    name = f"id:{passage.id}" if passage.id else f"text:{passage.title}\x1f{passage.text}"
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True, slots=True)
class Example:
    """What one query contributes to a batch: the query, its positive then negatives, and the keys
    of all its positives (to keep them out of its negatives)."""

    query: str
    passages: list[Passage]
    positive_keys: list[int]


def groups_from_qrels(collection: BeirCollection, split: str, min_grade: int = 1) -> list[TrainingGroup]:
    """One group per query of ``split`` with a document graded ``min_grade`` or more (no negatives)."""
    qrels = collection.qrels(split)
    queries = {q.id: q for q in collection.judged_queries(split)}
    docs = {d.id: d for d in collection.corpus}
    path = collection.root / "qrels" / f"{split}.tsv"
    groups = []
    for qid, judged in qrels.items():
        positive_ids = [doc_id for doc_id, grade in judged.items() if grade >= min_grade]
        missing = [doc_id for doc_id in positive_ids if doc_id not in docs]
        if missing:
            raise CollectionError(path, None, f"query {qid}: judged documents not in corpus.jsonl: {missing[:3]}")
        if positive_ids:
            positives = tuple(Passage.from_document(docs[d]) for d in positive_ids)
            groups.append(TrainingGroup(queries[qid].text, positives, query_id=qid))
    if not groups:
        raise CollectionError(path, None, f"no query has a document graded >= {min_grade}")
    return groups


def _passage(value: Any, path: Path, line: int, key: str) -> Passage:
    if isinstance(value, str):
        if not value.strip():
            raise CollectionError(path, line, f"empty passage in {key!r}")
        return Passage(text=value)
    if isinstance(value, dict):
        text = value.get("text")
        if not isinstance(text, str) or not text.strip():
            raise CollectionError(path, line, f"a passage in {key!r} has no non-empty 'text'")
        known = {"text", "title", "id", "_id"}
        extra = {k: v for k, v in value.items() if k not in known}
        doc_id = value.get("id", value.get("_id", ""))
        return Passage(text=text, title=str(value.get("title") or ""), id=str(doc_id), extra=extra)
    raise CollectionError(path, line, f"a passage in {key!r} is {type(value).__name__}, not a string or object")


def _passages(record: dict[str, Any], names: Sequence[str], path: Path, line: int) -> tuple[Passage, ...]:
    present = [name for name in names if name in record]
    if len(present) > 1:
        raise CollectionError(path, line, f"both {present[0]!r} and {present[1]!r} given")
    if not present:
        return ()
    values = record[present[0]]
    if not isinstance(values, list):
        raise CollectionError(path, line, f"{present[0]!r} must be a list")
    return tuple(_passage(v, path, line, present[0]) for v in values)


def parse_group(record: Any, path: Path, line: int) -> TrainingGroup:
    """One JSONL record as a :class:`TrainingGroup`; errors name ``path:line``."""
    if not isinstance(record, dict):
        raise CollectionError(path, line, f"expected a JSON object, got {type(record).__name__}")
    query = record.get("query")
    if not isinstance(query, str) or not query.strip():
        raise CollectionError(path, line, "missing or empty 'query'")
    positives = _passages(record, ("positives", "pos"), path, line)
    if not positives:
        raise CollectionError(path, line, "no positives ('positives' must list at least one passage)")
    negatives = _passages(record, ("negatives", "neg"), path, line)
    return TrainingGroup(query, positives, negatives, query_id=str(record.get("query_id") or ""))


def read_groups(path: str | Path) -> list[TrainingGroup]:
    """All groups of a JSONL training file (blank lines skipped)."""
    path = Path(path)
    if not path.exists():
        raise CollectionError(path, None, "training file not found")
    groups = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise CollectionError(path, number, f"invalid JSON: {exc}") from None
            groups.append(parse_group(record, path, number))
    if not groups:
        raise CollectionError(path, None, "training file holds no groups")
    return groups


def write_groups(path: str | Path, groups: Iterable[TrainingGroup]) -> int:
    """Write groups as JSONL (the format :func:`read_groups` reads); returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as handle:
        for group in groups:
            handle.write(orjson.dumps(group.as_json()) + b"\n")
            count += 1
    return count


def sample_group(group: TrainingGroup, group_size: int, rng: random.Random) -> Example:
    """The query and ``group_size`` passages: one positive, then ``group_size - 1`` negatives.

    Negatives are drawn without replacement while there are enough, with replacement otherwise.
    A group without any negative cannot fill its slots, so it is an error when ``group_size > 1``.
    """
    positive = rng.choice(group.positives)
    keys = [passage_key(p) for p in group.positives]
    wanted = group_size - 1
    if wanted == 0:
        return Example(group.query, [positive], keys)
    if not group.negatives:
        raise ValueError(
            f"query {group.query_id or group.query[:40]!r} has no negatives but the group size is {group_size}; "
            "mine negatives or use group size 1 (in-batch negatives only)"
        )
    if len(group.negatives) >= wanted:
        negatives = rng.sample(list(group.negatives), wanted)
    else:
        negatives = [rng.choice(group.negatives) for _ in range(wanted)]
    return Example(group.query, [positive, *negatives], keys)
