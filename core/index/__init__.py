"""Vector indices: one interface (:class:`VectorIndex`), FAISS and OpenSearch implementations."""

from retrosearch.core.index.base import (
    SEARCH_MODES,
    Footprint,
    SearchHits,
    SearchMode,
    SearchModeUnavailable,
    UnsupportedSearchOption,
    VectorIndex,
    mode_needs_vectors,
)
from retrosearch.core.index.registry import (
    BACKENDS,
    FAISS_BACKENDS,
    LOAD_BACKENDS,
    BackendName,
    FaissBackendName,
    create_index,
    load_index,
    open_index,
)
from retrosearch.core.vector_space import IndexMeta, IndexMismatchError

__all__ = [
    "BACKENDS",
    "FAISS_BACKENDS",
    "BackendName",
    "FaissBackendName",
    "Footprint",
    "LOAD_BACKENDS",
    "SEARCH_MODES",
    "IndexMeta",
    "IndexMismatchError",
    "SearchHits",
    "SearchMode",
    "SearchModeUnavailable",
    "UnsupportedSearchOption",
    "VectorIndex",
    "create_index",
    "load_index",
    "mode_needs_vectors",
    "open_index",
]
