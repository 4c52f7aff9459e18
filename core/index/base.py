"""The index interface every backend implements.

An index remembers the encoder it was built with (name, fingerprint, dimension, similarity) and
refuses queries encoded by another one: vectors of two models live in unrelated spaces, and
mixing them gives plausible-looking nonsense rather than an error. The record and its check live in
:mod:`retrosearch.core.vector_space` (the encoder writes it, every index keeps it); the package
re-exports them.

Every backend answers the same call, ``search(queries, k, filter=None, fields=None)``; its search
parameters (efSearch, nprobe, a GPU copy) are fixed when the index is opened or built, so one
index may be searched from many threads at once (see :meth:`VectorIndex.search`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from retrosearch.core.config import Settings
from retrosearch.core.errors import UserError
from retrosearch.core.vector_space import IndexMeta

# dense: our encoder's vector, any backend. The others are OpenSearch's own queries: bm25 (lexical),
# neural (OpenSearch embeds the text with our encoder as a remote model), hybrid (bm25 + dense).
SearchMode = Literal["dense", "neural", "bm25", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)


def mode_needs_vectors(mode: str) -> bool:
    """Whether a search mode uses query vectors computed by our encoder."""
    return mode in ("dense", "hybrid")


class UnsupportedSearchOption(UserError, ValueError):
    """A search option the backend cannot honour: a ``filter`` on a FAISS index (refused before any
    work is done), or a filter OpenSearch rejects as malformed (its HTTP 400).

    The caller's mistake, not the server's: a query service answers it with HTTP 400.
    """


class SearchModeUnavailable(UnsupportedSearchOption):
    """A search mode this index cannot run: a server-side mode on a local index, or ``neural`` on
    an index whose OpenSearch knows no model of ours."""


class IndexUnavailable(UserError, RuntimeError):
    """The index's server could not answer this search now (a node lost, no copy of a shard
    reachable, the cluster restarting): nothing wrong with the request, try it again.

    A query service answers it with HTTP 503; a command prints it as one line, like an
    unreachable OpenSearch.
    """


@dataclass
class SearchHits:
    """Top-k results of a batch of queries: ``ids[q][r]`` with ``scores[q][r]`` (encoder similarity).

    ``fields[q][r]`` holds the stored fields asked for of that hit (only those the backend has for
    it); ``fields`` is None when the search asked for none.
    """

    ids: list[list[str]]
    scores: list[list[float]]
    fields: list[list[dict[str, Any]]] | None = None

    def as_run(self, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The hits as a TREC-style run ``{qid: {docid: score}}``."""
        return {qid: dict(zip(ids, scores)) for qid, ids, scores in zip(query_ids, self.ids, self.scores)}


@dataclass(frozen=True)
class Footprint:
    """What an index's vectors cost: bytes held in memory to search, and bytes on disk.

    ``rescore_bytes`` is the part of ``disk_bytes`` a quantized index keeps for rescoring: a
    memory-mapped store, of which a search reads only its candidates' rows.
    """

    vectors: int
    memory_bytes: int
    disk_bytes: int
    rescore_bytes: int = 0

    def per_vector(self, nbytes: int) -> float:
        """``nbytes`` divided over the vectors (0 for an empty index)."""
        return nbytes / self.vectors if self.vectors else 0.0

    def describe(self) -> str:
        """``"memory 392 B/vector, disk 1,928 B/vector (1,536 of them the rescoring store)"``."""
        text = (f"memory {self.per_vector(self.memory_bytes):,.0f} B/vector, "
                f"disk {self.per_vector(self.disk_bytes):,.0f} B/vector")
        if self.rescore_bytes:
            text += f" ({self.per_vector(self.rescore_bytes):,.0f} of them the memory-mapped rescoring store)"
        return text


class VectorIndex(ABC):
    """Stores vectors by document id and answers top-k queries with the encoder's similarity."""

    meta: IndexMeta

    # -- opening (what the registry calls; see registry.py) --------------------------------------
    @classmethod
    def create_empty(
        cls, meta: IndexMeta, settings: Settings, kind: str | None = None, recreate: bool = False
    ) -> "VectorIndex":
        """A new, empty index for vectors described by ``meta`` (``kind``: the backend's variant)."""
        raise NotImplementedError(f"{cls.__name__} cannot be created through the registry")

    @classmethod
    def open_saved(cls, path: str | Path | None, settings: Settings, kind: str | None = None) -> "VectorIndex":
        """An existing index (a folder at ``path``, or the one ``settings`` names on a server),
        ready to search; ``kind`` given, it must be the variant the index was built as."""
        raise NotImplementedError(f"{cls.__name__} cannot be opened through the registry")

    @abstractmethod
    def add(self, ids: Sequence[str], vectors: np.ndarray, fields: Sequence[dict[str, Any]] | None = None) -> int:
        """Add vectors by id (with optional stored fields, where the backend keeps them).

        Adding an id twice never duplicates it. Returns how many rows were written.
        """

    @abstractmethod
    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter: dict[str, Any] | None = None,
        fields: Sequence[str] | None = None,
    ) -> SearchHits:
        """Top-``k`` ids and similarities for each row of ``queries`` (shape ``(n, dim)``).

        ``filter`` restricts the candidates (a backend-native clause: an OpenSearch query for the
        OpenSearch backend); a backend that cannot filter raises :class:`UnsupportedSearchOption`
        rather than returning unfiltered hits. ``fields`` names stored fields to return per hit
        in :attr:`SearchHits.fields`.

        Thread safety: ``search`` changes nothing on the index, so any number of threads may search
        one index at once and get exactly the hits serial calls would. ``add`` (and ``save``)
        concurrent with ``search`` are not supported: finish loading, then serve.
        """

    def search_texts(
        self,
        texts: Sequence[str],
        vectors: np.ndarray | None,
        k: int,
        mode: SearchMode = "dense",
        filter: dict[str, Any] | None = None,
        fields: Sequence[str] | None = None,
        dense_weight: float | None = None,
        normalization: str | None = None,
    ) -> SearchHits:
        """Search by query text in a search ``mode``: ``dense`` (``vectors``, our encoder's),
        or, on backends that have them, lexical and server-side modes (``bm25``, ``neural``,
        ``hybrid``; see the OpenSearch backend). Other backends refuse those modes with
        :class:`UnsupportedSearchOption`."""
        if mode != "dense":
            raise SearchModeUnavailable(
                f"search mode {mode!r} needs the opensearch backend; a {self.meta.backend or 'local'} index searches "
                "by vector only (mode dense)"
            )
        if vectors is None:
            raise ValueError("search mode 'dense' needs one query vector per text")
        return self.search(vectors, k, filter=filter, fields=fields)

    @abstractmethod
    def count(self) -> int:
        """Number of documents in the index."""

    def check_search_args(self, queries: np.ndarray, k: int, fields: Sequence[str] | None = None) -> np.ndarray:
        """``queries`` as a C-contiguous float32 ``(n, dim)`` array; a ValueError for a bad shape or ``k``."""
        if isinstance(fields, str):
            raise TypeError(f"fields must be a sequence of field names, not the string {fields!r}")
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.meta.dim:
            raise ValueError(f"expected queries of shape (n, {self.meta.dim}), got {queries.shape}")
        return queries

    @staticmethod
    def no_hits(n: int, fields: Sequence[str] | None = None) -> SearchHits:
        """``n`` empty hit lists (an empty index, or ``k == 0``)."""
        return SearchHits(
            ids=[[] for _ in range(n)], scores=[[] for _ in range(n)], fields=[[] for _ in range(n)] if fields else None
        )

    def footprint(self) -> Footprint | None:
        """Memory and disk taken by the vectors, where the backend can tell (None: a server's index)."""
        return None

    def save(self, path: str | Path) -> None:  # pragma: no cover - backends that persist override
        """Persist the index (a folder for FAISS; a no-op for server-side indices)."""

    def loading(self) -> AbstractContextManager[None]:
        """Context for a large load (server-side backends relax refresh and replicas in it)."""
        return nullcontext()

    def check_query_encoder(self, encoder_meta: IndexMeta) -> None:
        """Refuse queries from an encoder other than the one the index was built with."""
        self.meta.check_compatible(encoder_meta)
