"""The OpenSearch k-NN backend of the :class:`VectorIndex` interface.

Documents go in with their id as ``_id`` (so reloading is idempotent), the vector in
``settings.vector_field`` and any text fields beside it. Searches are ``knn`` queries sent in
``_msearch`` batches; scores are translated back into the encoder's similarity. A search keeps
nothing on the index object, so one :class:`OpenSearchIndex` (and its client, whose connection
pool is thread-safe) serves concurrent searches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from retrosearch.plugin.config import OpenSearchSettings, Settings
from retrosearch.plugin.index.base import IndexMeta, SearchHits, UnsupportedSearchOption, VectorIndex
from retrosearch.plugin.opensearch.bulk import BulkResult, bulk_index, loading_mode
from retrosearch.plugin.opensearch.client import connect
from retrosearch.plugin.opensearch.mapping import index_body, meta_from_mapping, score_to_similarity


class BulkLoadError(RuntimeError):
    """Some documents could not be written; ``result.failed`` lists them with reasons."""

    def __init__(self, index: str, result: BulkResult) -> None:
        self.result = result
        sample = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in result.failed[:3])
        super().__init__(f"{len(result.failed)} documents failed to load into {index!r} (e.g. {sample})")


def _reason(info: Any) -> Any:
    """The first root cause's reason of an OpenSearch error body (or the body itself)."""
    error = info.get("error", info) if isinstance(info, dict) else info
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        return causes[0].get("reason", error) if isinstance(causes[0], dict) else error
    return error


def _raise_search_error(index: str, response: dict[str, Any]) -> None:
    """A request OpenSearch refused as malformed (HTTP 400: a bad filter, an unknown field type)
    is the caller's :class:`UnsupportedSearchOption`; anything else is a RuntimeError."""
    reason = _reason(response)
    if response.get("status") == 400:
        raise UnsupportedSearchOption(f"OpenSearch refused the search on {index!r} (HTTP 400): {reason}")
    raise RuntimeError(f"k-NN search on {index!r} failed (HTTP {response.get('status')}): {reason}")


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
    def create_empty(
        cls, meta: IndexMeta, settings: Settings, kind: str | None = None, recreate: bool = False
    ) -> "OpenSearchIndex":
        """The registry's entry point: :meth:`create` ``settings.opensearch.index``."""
        return cls.create(meta, settings.opensearch, recreate=recreate)

    @classmethod
    def open_saved(cls, path: str | Path | None, settings: Settings, kind: str | None = None) -> "OpenSearchIndex":
        """The registry's entry point: :meth:`open` ``settings.opensearch.index`` (no folder)."""
        if path is not None:
            raise ValueError(
                f"the opensearch backend opens the index named in the settings, not a folder ({path}); "
                "give the OpenSearch index name instead"
            )
        return cls.open(settings.opensearch)

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
        self,
        vector: np.ndarray,
        k: int,
        filter: dict[str, Any] | None = None,
        fields: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The search body of one k-NN query: ``filter`` inside the knn clause (so it restricts the
        candidates before the top ``k`` are taken), ``fields`` as the ``_source`` includes."""
        clause: dict[str, Any] = {"vector": np.asarray(vector, dtype=np.float32), "k": k}
        if filter:
            clause["filter"] = filter
        if self.settings.hnsw_ef_search and self.settings.engine == "lucene":
            clause["method_parameters"] = {"ef_search": max(self.settings.hnsw_ef_search, k)}
        source: list[str] | bool = list(fields) if fields else False
        return {"size": k, "query": {"knn": {self.settings.vector_field: clause}}, "_source": source}

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter: dict[str, Any] | None = None,
        fields: Sequence[str] | None = None,
    ) -> SearchHits:
        """Top-``k`` per query, optionally restricted by an OpenSearch ``filter`` clause (any query,
        e.g. ``{"term": {"lang": "en"}}``), which may leave fewer than ``k`` hits.

        ``fields`` (stored field names) come back per hit in ``hits.fields``; a hit lacking a field
        has no key for it. Thread-safe: nothing is kept on ``self`` between or during calls.
        """
        queries = self.check_search_args(queries, k, fields)
        if k == 0:
            return self.no_hits(len(queries), fields)
        ids: list[list[str]] = []
        scores: list[list[float]] = []
        hit_fields: list[list[dict[str, Any]]] | None = [] if fields else None
        step = self.settings.search_batch
        for start in range(0, len(queries), step):
            body: list[dict[str, Any]] = []
            for vector in queries[start : start + step]:
                body += [{"index": self.name}, self.knn_query(vector, k, filter, fields)]
            try:
                responses = self.client.msearch(body=body)["responses"]
            except os_exc.RequestError as exc:  # HTTP 400 for the whole request: a filter that does not parse
                raise UnsupportedSearchOption(
                    f"OpenSearch refused the search on {self.name!r} (HTTP 400): {exc.error}: {_reason(exc.info)}"
                ) from None
            for response in responses:
                if "error" in response:
                    _raise_search_error(self.name, response)
                hits = response["hits"]["hits"]
                ids.append([hit["_id"] for hit in hits])
                scores.append([score_to_similarity(hit["_score"], self.space) for hit in hits])
                if hit_fields is not None:
                    hit_fields.append([hit.get("_source", {}) for hit in hits])
        return SearchHits(ids=ids, scores=scores, fields=hit_fields)

    def delete(self) -> None:
        """Drop the index."""
        self.client.indices.delete(index=self.name, ignore_unavailable=True)
