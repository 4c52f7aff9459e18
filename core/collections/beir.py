"""BEIR-layout collections: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

from retrosearch.core.collections.errors import CollectionError
from retrosearch.core.collections.readers import read_corpus, read_queries
from retrosearch.core.collections.records import Document, Query

Qrels = dict[str, dict[str, int]]


def read_qrels(path: str | Path) -> Qrels:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``) into ``{qid: {docid: grade}}``."""
    path = Path(path)
    if not path.exists():
        raise CollectionError(path, None, "qrels file not found")
    qrels: Qrels = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue
            if len(row) != 3:
                raise CollectionError(path, number, f"expected 3 tab-separated columns, got {len(row)}")
            qid, docid, score = (cell.strip() for cell in row)
            if not qid or not docid:
                raise CollectionError(path, number, "empty query id or corpus id")
            try:
                grade = int(float(score))
            except ValueError:
                raise CollectionError(path, number, f"score {score!r} is not a number") from None
            qrels.setdefault(qid, {})[docid] = grade
    return qrels


class BeirCollection:
    """A folder in BEIR layout; files are read lazily and validated on first use."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not (self.root / "corpus.jsonl").exists():
            raise CollectionError(self.root / "corpus.jsonl", None, "not a BEIR collection: corpus.jsonl missing")
        self.name = self.root.name

    @cached_property
    def corpus(self) -> list[Document]:
        """All documents, in file order."""
        return list(read_corpus(self.root / "corpus.jsonl"))

    @cached_property
    def queries(self) -> dict[str, Query]:
        """All queries by id (judged or not)."""
        return {q.id: q for q in read_queries(self.root / "queries.jsonl")}

    def splits(self) -> list[str]:
        """Names of the qrels splits present (``test``, ``train``, ...)."""
        return sorted(p.stem for p in (self.root / "qrels").glob("*.tsv"))

    def qrels(self, split: str = "test") -> Qrels:
        """Judgments of one split; unknown query or document ids are reported with the file."""
        path = self.root / "qrels" / f"{split}.tsv"
        if not path.exists():
            raise CollectionError(path, None, f"no qrels for split {split!r} (have: {', '.join(self.splits())})")
        return read_qrels(path)

    def judged_queries(self, split: str = "test") -> list[Query]:
        """The queries that have at least one judgment in ``split``, in qrels order."""
        qrels = self.qrels(split)
        missing = [qid for qid in qrels if qid not in self.queries]
        if missing:
            raise CollectionError(
                self.root / "qrels" / f"{split}.tsv", None, f"{len(missing)} query ids not in queries.jsonl, e.g. {missing[:3]}"
            )
        return [self.queries[qid] for qid in qrels]
