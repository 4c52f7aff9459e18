"""A training split for a collection that has only a test split: its judged queries divided in two.

The division is by a seeded hash of each query id, so it does not depend on the order of the
qrels file and the same seed always gives the same two sets. The corpus and queries are linked,
not copied; only the two qrels files are written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from retrosearch.pipeline.config import Holdout, PipelineConfig


def _rank(seed: int, query_id: str) -> str:
    return hashlib.sha256(f"{seed}\0{query_id}".encode()).hexdigest()


def divide(query_ids: list[str], holdout: Holdout) -> tuple[set[str], set[str]]:
    """(train, test) query ids: ``test_fraction`` of them, at least one in each, chosen by hash."""
    if len(query_ids) < 2:
        raise ValueError(f"holdout needs at least 2 judged queries in split {holdout.split!r}, found {len(query_ids)}")
    ordered = sorted(query_ids, key=lambda q: _rank(holdout.seed, q))
    n_test = min(len(ordered) - 1, max(1, round(len(ordered) * holdout.test_fraction)))
    return set(ordered[n_test:]), set(ordered[:n_test])


def write_divided(source: Path, dest: Path, holdout: Holdout) -> Path:
    """``dest`` as ``source`` with qrels ``train_split`` and ``test_split`` from ``holdout.split``'s queries."""
    qrels = source / "qrels" / f"{holdout.split}.tsv"
    if not qrels.is_file():
        raise ValueError(f"holdout.split {holdout.split!r}: {qrels} does not exist")
    lines = qrels.read_text().splitlines()
    header = lines[0] if lines and lines[0].lower().startswith("query") else None
    rows = [line for line in (lines[1:] if header else lines) if line.strip()]
    query_ids = list(dict.fromkeys(row.split("\t", 1)[0] for row in rows))
    train, _ = divide(query_ids, holdout)
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        link = dest / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink((source / name).resolve(), link)
    head = [header] if header else []
    for split, keep in ((holdout.train_split, True), (holdout.test_split, False)):
        chosen = [row for row in rows if (row.split("\t", 1)[0] in train) == keep]
        (dest / "qrels" / f"{split}.tsv").write_text("\n".join(head + chosen) + "\n")
    return dest


def prepare_collection(pipeline: PipelineConfig) -> Path:
    """The folder the stages read; with ``holdout`` it is written first (the same content every time)."""
    folder = pipeline.collection_dir()
    if pipeline.holdout is not None:
        write_divided(pipeline.collection.resolve(), folder, pipeline.holdout)
    return folder
