"""Vector indices: one interface (:class:`VectorIndex`), FAISS and OpenSearch implementations."""

from retrosearch.plugin.index.base import (
    IndexMeta,
    IndexMismatchError,
    SearchHits,
    UnsupportedSearchOption,
    VectorIndex,
)
from retrosearch.plugin.index.registry import BACKENDS, LOAD_BACKENDS, create_index, load_index, open_index

__all__ = [
    "BACKENDS",
    "LOAD_BACKENDS",
    "IndexMeta",
    "IndexMismatchError",
    "SearchHits",
    "UnsupportedSearchOption",
    "VectorIndex",
    "create_index",
    "load_index",
    "open_index",
]
