"""Vector indices: one interface (:class:`VectorIndex`), FAISS and OpenSearch implementations."""

from retrosearch.plugin.index.base import IndexMeta, IndexMismatchError, SearchHits, VectorIndex
from retrosearch.plugin.index.registry import BACKENDS, create_index, load_index

__all__ = [
    "BACKENDS",
    "IndexMeta",
    "IndexMismatchError",
    "SearchHits",
    "VectorIndex",
    "create_index",
    "load_index",
]
