"""The index interface every backend implements, and the record of what built an index.

An index remembers the encoder it was built with (name, fingerprint, dimension, similarity) and
refuses queries encoded by another one: vectors of two models live in unrelated spaces, and
mixing them gives plausible-looking nonsense rather than an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from retrosearch.plugin.config import Similarity


class IndexMismatchError(ValueError):
    """The encoder used for a query is not the one the index was built with."""


class IndexMeta(BaseModel):
    """What an index was built with; saved beside it and checked before every search."""

    model_config = ConfigDict(extra="allow")

    model_name: str
    model_fingerprint: str
    dim: int
    similarity: Similarity
    backend: str = ""
    params: dict[str, Any] = {}

    def check_compatible(self, other: "IndexMeta") -> None:
        """Raise :class:`IndexMismatchError` unless ``other`` encodes into the same space."""
        problems = []
        if other.model_fingerprint != self.model_fingerprint:
            problems.append(
                f"model {other.model_name!r} ({other.model_fingerprint[:12]}) differs from the index's "
                f"{self.model_name!r} ({self.model_fingerprint[:12]})"
            )
        if other.dim != self.dim:
            problems.append(f"dimension {other.dim} != {self.dim}")
        if other.similarity != self.similarity:
            problems.append(f"similarity {other.similarity} != {self.similarity}")
        if problems:
            raise IndexMismatchError("refusing to search: " + "; ".join(problems))


@dataclass
class SearchHits:
    """Top-k results of a batch of queries: ``ids[q][r]`` with ``scores[q][r]`` (encoder similarity)."""

    ids: list[list[str]]
    scores: list[list[float]]

    def as_run(self, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The hits as a TREC-style run ``{qid: {docid: score}}``."""
        return {qid: dict(zip(ids, scores)) for qid, ids, scores in zip(query_ids, self.ids, self.scores)}


class VectorIndex(ABC):
    """Stores vectors by document id and answers top-k queries with the encoder's similarity."""

    meta: IndexMeta

    @abstractmethod
    def add(self, ids: Sequence[str], vectors: np.ndarray, fields: Sequence[dict[str, Any]] | None = None) -> int:
        """Add vectors by id (with optional stored fields, where the backend keeps them).

        Adding an id twice never duplicates it. Returns how many rows were written.
        """

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> SearchHits:
        """Top-``k`` ids and similarities for each row of ``queries``."""

    @abstractmethod
    def count(self) -> int:
        """Number of documents in the index."""

    def save(self, path: str | Path) -> None:  # pragma: no cover - backends that persist override
        """Persist the index (a folder for FAISS; a no-op for server-side indices)."""

    def loading(self) -> AbstractContextManager[None]:
        """Context for a large load (server-side backends relax refresh and replicas in it)."""
        return nullcontext()

    def check_query_encoder(self, encoder_meta: IndexMeta) -> None:
        """Refuse queries from an encoder other than the one the index was built with."""
        self.meta.check_compatible(encoder_meta)
