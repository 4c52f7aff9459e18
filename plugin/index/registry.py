"""Backend names as the CLI spells them, and the one place that turns a name into an index."""

from __future__ import annotations

from pathlib import Path

from retrosearch.plugin.config import Settings
from retrosearch.plugin.index.base import IndexMeta, VectorIndex

BACKENDS = ("faiss-flat", "faiss-hnsw", "faiss-ivfpq", "opensearch")


def create_index(backend: str, meta: IndexMeta, settings: Settings | None = None, recreate: bool = False) -> VectorIndex:
    """A new, empty index of ``backend`` for vectors described by ``meta``.

    For ``opensearch`` the index is ``settings.opensearch.index``; an existing one built with the
    same encoder is reused unless ``recreate``.
    """
    settings = settings or Settings()
    if backend.startswith("faiss-"):
        from retrosearch.plugin.index.faiss_index import FaissIndex

        return FaissIndex(meta, kind=backend.removeprefix("faiss-"), settings=settings.faiss)
    if backend == "opensearch":
        from retrosearch.plugin.index.opensearch_index import OpenSearchIndex

        return OpenSearchIndex.create(meta, settings.opensearch, recreate=recreate)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def load_index(path: str | Path | None, settings: Settings | None = None, backend: str = "faiss") -> VectorIndex:
    """Open a saved FAISS index folder, or (``backend="opensearch"``) the index ``settings.opensearch.index``."""
    settings = settings or Settings()
    if backend == "opensearch":
        from retrosearch.plugin.index.opensearch_index import OpenSearchIndex

        return OpenSearchIndex.open(settings.opensearch)
    from retrosearch.plugin.index.faiss_index import FaissIndex

    if path is None:
        raise ValueError("no FAISS index folder given")
    return FaissIndex.load(path, settings=settings.faiss)
