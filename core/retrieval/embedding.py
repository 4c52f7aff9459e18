"""A collection's corpus as vectors: embedded now, or read back from this encoder's cached index."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import cache_dir
from retrosearch.core.encoder import Encoder
from retrosearch.core.index.faiss_index import FaissIndex


def embed_corpus(collection: BeirCollection, encoder: Encoder) -> tuple[list[str], np.ndarray, dict[str, float]]:
    """Ids and vectors of every document of ``collection``, with the seconds spent."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    docs = collection.corpus
    seconds["read_corpus"] = time.perf_counter() - started
    started = time.perf_counter()
    vectors = encoder.encode_documents(docs, desc=f"embedding {collection.name}")
    seconds["encode_corpus"] = time.perf_counter() - started
    return [d.id for d in docs], vectors, seconds


def corpus_vectors(
    collection: BeirCollection, encoder: Encoder
) -> tuple[list[str], np.ndarray, dict[str, float], Path | None]:
    """Like :func:`embed_corpus`, but taken from this encoder's cached exact FAISS index of the
    collection when there is one (the same vectors, without minutes of embedding); the last
    item says where they came from (None: embedded now)."""
    cached = cached_index_dir(collection, encoder.fingerprint)
    if (cached / "meta.json").exists():
        started = time.perf_counter()
        stored = FaissIndex.load(cached)
        stored.check_query_encoder(encoder.index_meta())
        ids, vectors = stored.stored_vectors()
        if len(ids) == len(collection.corpus):
            return ids, vectors, {"read_cached_vectors": time.perf_counter() - started}, cached
    ids, vectors, seconds = embed_corpus(collection, encoder)
    return ids, vectors, seconds, None


def cached_index_dir(collection: BeirCollection, encoder_fingerprint: str, backend: str = "faiss-flat") -> Path:
    """Where the embedded default keeps a collection's FAISS index for one encoder."""
    return cache_dir() / "indices" / f"{collection.name}-{encoder_fingerprint[:16]}-{backend}"

