"""Vectors into an index: a new index of a backend filled in its bulk-loading mode, and the cached
exact FAISS index each collection gets per encoder (the embedded default)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import Settings
from retrosearch.core.encoder import Encoder, describe
from retrosearch.core.index import VectorIndex, create_index
from retrosearch.core.index.opensearch_index import default_index_name
from retrosearch.core.retrieval.embedding import cached_index_dir, embed_corpus


def fill_index(
    index: VectorIndex, ids: list[str], vectors: np.ndarray, fields: list[dict[str, Any]] | None = None
) -> tuple[int, float]:
    """Load ``vectors`` (and stored ``fields``) into ``index`` in its bulk-loading mode.

    Returns the documents written (an id already stored with the same content is not rewritten by
    backends that can tell) and the seconds it took.
    """
    started = time.perf_counter()
    with index.loading():
        written = index.add(ids, vectors, fields)
    return written, time.perf_counter() - started


def text_fields(collection: BeirCollection, ids: list[str]) -> list[dict[str, Any]]:
    """Title and text of each id, for backends that also search lexically."""
    docs = {d.id: d for d in collection.corpus}
    return [{"title": docs[i].title, "text": docs[i].text} for i in ids]


def index_vectors(
    ids: list[str], vectors: np.ndarray, encoder: Encoder, backend: str, settings: Settings,
    fields: list[dict[str, Any]] | None = None,
) -> tuple[VectorIndex, float]:
    """A new ``backend`` index holding ``vectors`` (and ``fields``), and the seconds it took to build."""
    started = time.perf_counter()
    index = create_index(backend, encoder.index_meta(), settings, recreate=True)
    created = time.perf_counter() - started
    return index, created + fill_index(index, ids, vectors, fields)[1]


def build_index(collection: BeirCollection, encoder: Encoder, backend: str, settings: Settings) -> tuple[VectorIndex, dict[str, float]]:
    """Embed every document of ``collection`` and load it into a new ``backend`` index.

    The index is created first, so an unreachable server fails before minutes of embedding.
    An OpenSearch index without a configured name is called after the collection and encoder.
    """
    if backend == "opensearch" and not settings.opensearch.index:
        settings = settings.model_copy(deep=True)
        settings.opensearch.index = default_index_name(collection.name, encoder.fingerprint)
    started = time.perf_counter()
    index = create_index(backend, encoder.index_meta(), settings, recreate=True)
    created = time.perf_counter() - started
    ids, vectors, seconds = embed_corpus(collection, encoder)
    seconds["build_index"] = created + fill_index(index, ids, vectors)[1]
    return index, seconds


def cached_faiss_index(collection: BeirCollection, settings: Settings) -> Path:
    """The cached exact FAISS index of ``collection`` for ``settings.encoder``, built on first use."""
    index_dir = cached_index_dir(collection, describe(settings.encoder).model_fingerprint)
    if not (index_dir / "meta.json").exists():
        encoder = Encoder.load(settings.encoder)
        index, _ = build_index(collection, encoder, "faiss-flat", settings)
        index.save(index_dir)
    return index_dir

