"""Backend names as the CLI spells them, and the one place that turns a name into an index."""

from __future__ import annotations

from pathlib import Path

from retrosearch.plugin.config import Settings
from retrosearch.plugin.index.base import IndexMeta, VectorIndex

BACKENDS = ("faiss-flat", "faiss-hnsw", "faiss-ivfpq")


def create_index(backend: str, meta: IndexMeta, settings: Settings | None = None) -> VectorIndex:
    """A new, empty index of ``backend`` for vectors described by ``meta``."""
    settings = settings or Settings()
    if backend.startswith("faiss-"):
        from retrosearch.plugin.index.faiss_index import FaissIndex

        return FaissIndex(meta, kind=backend.removeprefix("faiss-"), settings=settings.faiss)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def load_index(path: str | Path, settings: Settings | None = None) -> VectorIndex:
    """Open a saved FAISS index folder."""
    from retrosearch.plugin.index.faiss_index import FaissIndex

    return FaissIndex.load(path, settings=(settings or Settings()).faiss)
