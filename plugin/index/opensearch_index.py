"""The OpenSearch k-NN backend of the :class:`VectorIndex` interface.

Documents go in with their id as ``_id`` (so reloading is idempotent), the vector in
``settings.vector_field`` and any text fields beside it. Searches are ``knn`` queries sent in
``_msearch`` batches; scores are translated back into the encoder's similarity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from retrosearch.plugin.config import OpenSearchSettings
from retrosearch.plugin.index.base import IndexMeta, SearchHits, VectorIndex
from retrosearch.plugin.opensearch.bulk import BulkResult, bulk_index, loading_mode
from retrosearch.plugin.opensearch.client import connect
from retrosearch.plugin.opensearch.mapping import index_body, meta_from_mapping, score_to_similarity


class BulkLoadError(RuntimeError):
    """Some documents could not be written; ``result.failed`` lists them with reasons."""

    def __init__(self, index: str, result: BulkResult) -> None:
        self.result = result
        sample = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in result.failed[:3])
        super().__init__(f"{len(result.failed)} documents failed to load into {index!r} (e.g. {sample})")


def default_index_name(collection: str, fingerprint: str) -> str:
    """A valid OpenSearch index name for a collection embedded by one encoder."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in collection.lower()).strip("-_")
    return f"retrosearch-{safe}-{fingerprint[:12]}"


class OpenSearchIndex(VectorIndex):
    """A k-NN index on an OpenSearch cluster."""

    def __init__(self, client: OpenSearch, name: str, meta: IndexMeta, settings: OpenSearchSettings) -> None:
        self.client = client
        self.name = name
        self.meta = meta
        self.settings = settings
        self.space = meta.params.get("space_type", "innerproduct")
        self.last_result = BulkResult()
        self._loading = False

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, meta: IndexMeta, settings: OpenSearchSettings, client: OpenSearch | None = None, recreate: bool = False
    ) -> "OpenSearchIndex":
        """Create ``settings.index`` for vectors described by ``meta``; an existing index is reused
        when it was built with the same encoder (and dropped first when ``recreate``)."""
        if not settings.index:
            raise ValueError("no OpenSearch index name given")
        client = client or connect(settings)
        if client.indices.exists(index=settings.index):
            if not recreate:
                existing = cls.open(settings, client)
                existing.check_query_encoder(meta)
                return existing
            client.indices.delete(index=settings.index)
        body = index_body(meta, settings)
        client.indices.create(index=settings.index, body=body)
        recorded = IndexMeta.model_validate(body["mappings"]["_meta"]["retrosearch"])
        return cls(client, settings.index, recorded, settings)

    @classmethod
    def open(cls, settings: OpenSearchSettings, client: OpenSearch | None = None) -> "OpenSearchIndex":
        """Open an existing index built by RetroSearch; its mapping says which encoder built it."""
        if not settings.index:
            raise ValueError("no OpenSearch index name given")
        client = client or connect(settings)
        try:
            mapping = client.indices.get_mapping(index=settings.index)[settings.index]["mappings"]
        except os_exc.NotFoundError:
            raise FileNotFoundError(f"OpenSearch index {settings.index!r} does not exist at {settings.url}") from None
        return cls(client, settings.index, meta_from_mapping(mapping, settings.index), settings)

    # -- writing --------------------------------------------------------------------------------
    def documents(
        self, ids: Sequence[str], vectors: np.ndarray, fields: Sequence[dict[str, Any]] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Bulk-ready documents: ``_id``, the vector and the extra fields of each row."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.meta.dim:
            raise ValueError(f"expected vectors of shape (n, {self.meta.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        for row, doc_id in enumerate(ids):
            extra = fields[row] if fields is not None else {}
            yield {"_id": doc_id, **extra, self.settings.vector_field: vectors[row]}

    def write(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        fields: Sequence[dict[str, Any]] | None = None,
        progress: Any = None,
        refresh: bool | None = None,
    ) -> BulkResult:
        """Bulk-load rows; returns what was written and what failed (with reasons).

        Outside :meth:`loading` the rows are searchable when this returns; inside it (or with
        ``refresh=False``, for writers whose caller holds the loading mode), once the load
        finishes: refreshing after every batch would slow a large load down.
        """
        self.last_result = bulk_index(self.client, self.name, self.documents(ids, vectors, fields), self.settings, progress)
        if refresh if refresh is not None else not self._loading:
            self.client.indices.refresh(index=self.name)
        return self.last_result

    def add(self, ids: Sequence[str], vectors: np.ndarray, fields: Sequence[dict[str, Any]] | None = None) -> int:
        """Write rows (overwriting ids already present); raises :class:`BulkLoadError` on failures."""
        result = self.write(ids, vectors, fields)
        if result.failed:
            raise BulkLoadError(self.name, result)
        return result.written

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Bulk-loading mode for a large load (see :func:`loading_mode`)."""
        self._loading = True
        try:
            with loading_mode(self.client, self.name, self.settings):
                yield
        finally:
            self._loading = False

    # -- reading --------------------------------------------------------------------------------
    def count(self) -> int:
        self.client.indices.refresh(index=self.name)
        return int(self.client.count(index=self.name)["count"])

    def ids(self) -> set[str]:
        """Every document id in the index (a scan; for checks and resumption, not hot paths)."""
        from opensearchpy import helpers

        self.client.indices.refresh(index=self.name)
        hits = helpers.scan(self.client, index=self.name, query={"query": {"match_all": {}}, "_source": False})
        return {hit["_id"] for hit in hits}

    def knn_query(
        self, vector: np.ndarray, k: int, filter: dict[str, Any] | None = None, source: Sequence[str] | bool = False
    ) -> dict[str, Any]:
        """The search body of one k-NN query."""
        clause: dict[str, Any] = {"vector": np.asarray(vector, dtype=np.float32), "k": k}
        if filter:
            clause["filter"] = filter
        if self.settings.hnsw_ef_search and self.settings.engine == "lucene":
            clause["method_parameters"] = {"ef_search": max(self.settings.hnsw_ef_search, k)}
        return {"size": k, "query": {"knn": {self.settings.vector_field: clause}}, "_source": source}

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter: dict[str, Any] | None = None,
        source: Sequence[str] | bool = False,
    ) -> SearchHits:
        """Top-``k`` per query, optionally restricted by an OpenSearch ``filter`` clause.

        With ``source`` (field names) the chosen fields of each hit are kept in ``self.last_sources``.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.meta.dim:
            raise ValueError(f"expected queries of shape (n, {self.meta.dim}), got {queries.shape}")
        ids: list[list[str]] = []
        scores: list[list[float]] = []
        self.last_sources: list[list[dict[str, Any]]] = []
        step = self.settings.search_batch
        for start in range(0, len(queries), step):
            body: list[dict[str, Any]] = []
            for vector in queries[start : start + step]:
                body += [{"index": self.name}, self.knn_query(vector, k, filter, source)]
            for response in self.client.msearch(body=body)["responses"]:
                if "error" in response:
                    raise RuntimeError(f"k-NN search on {self.name!r} failed: {response['error']}")
                hits = response["hits"]["hits"]
                ids.append([hit["_id"] for hit in hits])
                scores.append([score_to_similarity(hit["_score"], self.space) for hit in hits])
                self.last_sources.append([hit.get("_source", {}) for hit in hits])
        return SearchHits(ids=ids, scores=scores)

    def delete(self) -> None:
        """Drop the index."""
        self.client.indices.delete(index=self.name, ignore_unavailable=True)
