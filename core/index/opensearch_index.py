"""The OpenSearch k-NN backend of the :class:`VectorIndex` interface.

Documents go in with their id as ``_id`` (so reloading is idempotent), the vector in
``settings.vector_field`` and any text fields beside it. Searches are ``knn`` queries sent in
``_msearch`` batches; scores are translated back into the encoder's similarity. A search keeps
nothing on the index object, so one :class:`OpenSearchIndex` (and its client, whose connection
pool is thread-safe) serves concurrent searches.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from opensearchpy import OpenSearch, helpers
from opensearchpy import exceptions as os_exc

from retrosearch.core.config import OpenSearchSettings, Settings
from retrosearch.core.errors import PartialFailure
from retrosearch.core.index.base import (
    SEARCH_MODES,
    IndexUnavailable,
    SearchHits,
    SearchMode,
    SearchModeUnavailable,
    UnsupportedSearchOption,
    VectorIndex,
    mode_needs_vectors,
)
from retrosearch.core.index.opensearch_codes import (
    Int8Codes,
    binary_codes,
    hamming_from_score,
    hamming_similarity,
    pack_floats,
    unpack_floats,
)
from retrosearch.core.opensearch.bulk import BulkResult, bulk_index, loading_mode
from retrosearch.core.opensearch.client import connect
from retrosearch.core.opensearch.mapping import (
    DATA_TYPES,
    TEXT_FIELDS,
    index_body,
    meta_from_mapping,
    score_to_similarity,
)
from retrosearch.core.opensearch.model_errors import RemoteModelError, explain_model_failure
from retrosearch.core.opensearch.pipelines import ensure_hybrid_pipeline, recorded_models
from retrosearch.core.opensearch.queries import bm25_clause, hybrid_clause, neural_clause, search_body
from retrosearch.core.vector_space import IndexMeta

# The mapping's _meta key of the int8 codes' ranges (beside "retrosearch", the encoder's record).
CODES_META_KEY = "retrosearch_int8"


class BulkLoadError(PartialFailure, RuntimeError):
    """Some documents could not be written; ``result.failed`` lists them by id with reasons."""

    def __init__(self, index: str, result: BulkResult) -> None:
        self.result = result
        sample = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in result.failed[:5])
        more = f" and {len(result.failed) - 5} more" if len(result.failed) > 5 else ""
        super().__init__(f"{len(result.failed)} documents failed to load into {index!r} after retries: "
                         f"{sample}{more}; rerun the same command to load them (ids make it idempotent)")


def _reason(info: Any) -> Any:
    """The first root cause's reason of an OpenSearch error body (or the body itself)."""
    error = info.get("error", info) if isinstance(info, dict) else info
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        return causes[0].get("reason", error) if isinstance(causes[0], dict) else error
    return error


# A search item that failed because a node went away or the cluster is busy or starting: a passing fault,
# not the query's or the model's (ml-commons' own call to a lost node reads the same way, and a restarting
# node answers "OpenSearch Security not initialized" for the model's predict call).
_NODE_FAULT = re.compile(
    r"node_?not_?connected|node_?disconnected|node_?closed|connect_?transport|no_?shard_?available"
    r"|not (yet )?initialized|cluster_?block|circuit_?breaking|rejected_?execution",
    re.I,
)


def _raise_search_error(index: str, response: dict[str, Any], neural: bool = False) -> None:
    """A request OpenSearch refused as malformed (HTTP 400: a bad filter, an unknown field type)
    is the caller's :class:`UnsupportedSearchOption`; a lost node, an unreachable shard or an
    overloaded cluster (HTTP 429, 5xx) is :class:`IndexUnavailable`, passing; a neural query whose
    model failed is a :class:`RemoteModelError` saying what to do; anything else is a RuntimeError."""
    reason = _reason(response)
    status = response.get("status")
    error = response.get("error")
    described = json.dumps(error) if isinstance(error, dict) else str(error)
    server_side = status == 429 or (isinstance(status, int) and status >= 500)
    if server_side and _NODE_FAULT.search(described):
        raise IndexUnavailable(f"OpenSearch could not search {index!r} now (HTTP {status}): {reason}")
    if neural and status != 400:
        raise RemoteModelError(f"neural search on {index!r} failed: "
                               + explain_model_failure(str(reason), status))
    if server_side:
        raise IndexUnavailable(f"OpenSearch could not search {index!r} (HTTP {status}): {reason}")
    if status == 400:
        raise UnsupportedSearchOption(f"OpenSearch refused the search on {index!r} (HTTP 400): {reason}")
    raise RuntimeError(f"k-NN search on {index!r} failed (HTTP {response.get('status')}): {reason}")


def default_index_name(collection: str, fingerprint: str) -> str:
    """A valid OpenSearch index name for a collection embedded by one encoder."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in collection.lower()).strip("-_")
    return f"retrosearch-{safe}-{fingerprint[:12]}"


class OpenSearchIndex(VectorIndex):
    """A k-NN index on an OpenSearch cluster."""

    # The stored text fields lexical (bm25, hybrid) searches match against.
    text_fields: tuple[str, ...] = TEXT_FIELDS

    def __init__(self, client: OpenSearch, name: str, meta: IndexMeta, settings: OpenSearchSettings) -> None:
        self.client = client
        self.name = name
        self.meta = meta
        self.settings = settings
        self.space = meta.params.get("space_type", "innerproduct")
        # Quantized k-NN vectors (Lucene's sq, or our int8 / binary codes): dense searches rescore
        # (see `search`).
        self.encoding = meta.params.get("knn_encoder", "none")
        self.quantized = self.encoding != "none"
        self._int8: Int8Codes | None = None  # read from the mapping when first needed
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
        body = index_body(meta, settings)  # settings refused here leave an existing index alone
        client = client or connect(settings)
        if client.indices.exists(index=settings.index):
            if not recreate:
                existing = cls.open(settings, client)
                existing.check_query_encoder(meta)
                return existing
            client.indices.delete(index=settings.index)
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
        if self.encoding not in DATA_TYPES:
            for row, doc_id in enumerate(ids):
                extra = fields[row] if fields is not None else {}
                yield {"_id": doc_id, **extra, self.settings.vector_field: vectors[row]}
            return
        if self.encoding == "int8":
            codes = self._int8_codes(vectors).documents(vectors)
        else:
            codes = binary_codes(vectors)
        rescore_field = self.meta.params["rescore_field"]
        for row, doc_id in enumerate(ids):
            extra = fields[row] if fields is not None else {}
            yield {"_id": doc_id, **extra, self.settings.vector_field: codes[row],
                   rescore_field: pack_floats(vectors[row])}

    def _int8_codes(self, vectors: np.ndarray) -> Int8Codes:
        """The int8 codec of this index: its ranges are trained on the first vectors written and
        recorded in the mapping, where every later writer and searcher reads them."""
        if self._int8 is None:
            recorded = self._recorded_ranges()
            if recorded is None:
                # Two first writers at once: the ranges recorded last win; codes written with the
                # other's differ only as far as the ranges do, and rescoring restores the order.
                recorded = Int8Codes.train(vectors).ranges
                self._record_ranges(recorded)
            self._int8 = Int8Codes(recorded)
        return self._int8

    def _mapping_meta(self) -> dict[str, Any]:
        return self.client.indices.get_mapping(index=self.name)[self.name]["mappings"].get("_meta", {})

    def _recorded_ranges(self) -> np.ndarray | None:
        """The int8 ranges recorded in the mapping (beside the encoder's record), if any yet."""
        ranges = (self._mapping_meta().get(CODES_META_KEY) or {}).get("int8_ranges")
        return None if ranges is None else np.asarray(ranges, dtype=np.float32)

    def _record_ranges(self, ranges: np.ndarray) -> None:
        meta = self._mapping_meta()
        meta[CODES_META_KEY] = {"int8_ranges": np.asarray(ranges).tolist()}
        # _meta is replaced as a whole on update, so every other record is written back with it.
        self.client.indices.put_mapping(index=self.name, body={"_meta": meta})

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
        searched = self._query_codes(np.asarray(vector, dtype=np.float32)[None])[0]
        clause: dict[str, Any] = {"vector": searched, "k": k}
        if filter:
            clause["filter"] = filter
        if self._method_parameters(k):
            clause["method_parameters"] = self._method_parameters(k)
        return search_body({"knn": {self.settings.vector_field: clause}}, k, fields)

    def _query_codes(self, queries: np.ndarray) -> np.ndarray:
        """What the k-NN field is searched with: the vectors, or their codes (int8, binary)."""
        if self.encoding == "binary":
            return binary_codes(queries)
        if self.encoding == "int8":
            return self._searcher_int8().queries(queries)[0]
        return queries

    def _searcher_int8(self) -> Int8Codes:
        if self._int8 is None:
            ranges = self._recorded_ranges()
            if ranges is None:
                raise UnsupportedSearchOption(f"OpenSearch index {self.name!r} holds no int8 vectors yet "
                                              "(its ranges are set by the first vectors written)")
            self._int8 = Int8Codes(ranges)
        return self._int8

    def _method_parameters(self, k: int) -> dict[str, Any] | None:
        # Lucene's HNSW explores only k candidates unless told otherwise; the other engines take
        # ef_search from the index settings.
        if self.settings.hnsw_ef_search and self.settings.engine == "lucene":
            return {"ef_search": max(self.settings.hnsw_ef_search, k)}
        return None

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
        if self.quantized and self.settings.rescore:
            return self._search_rescored(queries, k, filter, fields)
        bodies = [self.knn_query(vector, k, filter, fields) for vector in queries]
        if self.encoding == "binary":
            return self._msearch(bodies, fields, lambda score: hamming_similarity(hamming_from_score(score),
                                                                                  self.meta.dim))
        hits = self._msearch(bodies, fields, lambda score: score_to_similarity(score, self.space))
        if self.encoding == "int8":  # the codes' inner product, as the inner product it approximates
            _, scale, offset = self._searcher_int8().queries(queries)
            hits.scores = [[float(o + c * s) for s in row] for row, c, o in zip(hits.scores, scale, offset)]
        return hits

    def _search_rescored(
        self, queries: np.ndarray, k: int, filter: dict[str, Any] | None, fields: Sequence[str] | None
    ) -> SearchHits:
        """Top ``k x oversample`` by the codes' scores, rescored by inner product with the float vectors
        of their ``_source`` (the encoder's similarity, as in exact search), best ``k`` kept. The float
        vectors are the k-NN field's own (sq) or the rescoring field's beside the codes (int8, binary)."""
        width = math.ceil(k * self.settings.oversample)
        field = self.meta.params.get("rescore_field", self.settings.vector_field)
        bodies = [self.knn_query(vector, width, filter, [*(fields or []), field]) for vector in queries]
        candidates = self._msearch(bodies, [field], float)
        ids, scores, kept = [], [], []
        for query, row_ids, row_fields in zip(queries, candidates.ids, candidates.fields or []):
            if field == self.settings.vector_field:
                vectors = np.asarray([source[field] for source in row_fields], dtype=np.float32)
            else:
                vectors = np.asarray([unpack_floats(source[field], len(query)) for source in row_fields])
            vectors = vectors.reshape(-1, len(query))
            similarity = vectors @ query
            order = np.argsort(-similarity, kind="stable")[:k]
            ids.append([row_ids[i] for i in order])
            scores.append(similarity[order].astype(float).tolist())
            kept.append([{n: v for n, v in row_fields[i].items() if n in (fields or ())} for i in order])
        return SearchHits(ids=ids, scores=scores, fields=kept if fields else None)

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
        """Top-``k`` per query text in any mode of :mod:`~retrosearch.core.opensearch.queries`.

        ``dense`` and ``hybrid`` use ``vectors`` (our encoder's, one row per text); ``neural``
        lets OpenSearch embed the text with the model ``retrosearch opensearch connect`` recorded
        for this index; ``bm25`` is lexical only. Scores: the encoder's similarity (dense, neural),
        BM25 (bm25), the pipeline's normalised combination in [0, 1] (hybrid). ``dense_weight``
        (default the settings' ``hybrid_dense_weight``) weighs the dense part of a hybrid score,
        ``normalization`` (``min_max`` or ``l2``, default the settings') normalises each part first.
        """
        if mode not in SEARCH_MODES:
            raise SearchModeUnavailable(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        if mode_needs_vectors(mode) and (vectors is None or len(vectors) != len(texts)):
            raise ValueError(f"search mode {mode!r} needs one query vector per text")
        if isinstance(fields, str):
            raise TypeError(f"fields must be a sequence of field names, not the string {fields!r}")
        if mode == "dense":
            return self.search(vectors, k, filter, fields)
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        if k == 0:
            return self.no_hits(len(texts), fields)
        if mode == "bm25":
            bodies = [search_body(bm25_clause(text, self.text_fields, filter), k, fields) for text in texts]
            return self._msearch(bodies, fields, float)
        if mode == "neural":
            if self.encoding in DATA_TYPES:
                raise SearchModeUnavailable(
                    f"index {self.name!r} holds {self.encoding} codes (knn_encoder {self.encoding}); neural "
                    "queries send OpenSearch's float vectors, so search it in dense or hybrid mode"
                )
            model_id = self.connected_models().get("query_model_id")
            if not model_id:
                raise SearchModeUnavailable(
                    f"index {self.name!r} has no encoder model in OpenSearch for neural queries; run "
                    f"`retrosearch opensearch connect --service-url URL --index-name {self.name}` first"
                )
            bodies = [search_body(neural_clause(self.settings.vector_field, text, k, model_id, filter,
                                                self._method_parameters(k)), k, fields)
                      for text in texts]
            return self._msearch(bodies, fields, lambda score: score_to_similarity(score, self.space), neural=True)
        vectors = self.check_search_args(vectors, k, fields)
        weight = self.settings.hybrid_dense_weight if dense_weight is None else dense_weight
        pipeline = self._hybrid_pipeline(weight, normalization or self.settings.hybrid_normalization)
        bodies = []
        for text, vector in zip(texts, vectors):
            dense = self.knn_query(vector, k, filter, fields)["query"]
            bodies.append(search_body(hybrid_clause(bm25_clause(text, self.text_fields, filter), dense), k, fields))
        # _msearch takes no search pipeline, so each hybrid query is a search of its own.
        return self._collect([self._request(lambda b=body: self.client.search(
            index=self.name, body=b, params={"search_pipeline": pipeline})) for body in bodies], fields, float)

    def connected_models(self) -> dict[str, str]:
        """The model ids ``retrosearch opensearch connect`` recorded in the mapping (read afresh:
        the index may have been connected after it was opened)."""
        mapping = self.client.indices.get_mapping(index=self.name)[self.name]["mappings"]
        return recorded_models(mapping)

    def _hybrid_pipeline(self, weight: float, technique: str) -> str:
        try:
            return ensure_hybrid_pipeline(self.client, weight, technique)
        except ValueError as exc:
            raise UnsupportedSearchOption(str(exc)) from None
        except os_exc.AuthorizationException as exc:
            # A reader may use the pipelines `opensearch connect` made but not create one of its own.
            raise UnsupportedSearchOption(
                f"hybrid search with dense weight {weight} and {technique} normalisation needs a search "
                f"pipeline that does not exist yet and this user may not create: {exc}"
            ) from None
        except (os_exc.ConnectionError, os_exc.ConnectionTimeout):
            raise  # the backend is down: the caller reports it as such
        except os_exc.TransportError as exc:
            raise UnsupportedSearchOption(
                f"hybrid search needs OpenSearch's neural-search plugin (`retrosearch opensearch start --with-ml`): "
                f"creating its search pipeline failed (HTTP {exc.status_code}): {_reason(exc.info)}"
            ) from None

    def _request(self, call: Any) -> dict[str, Any]:
        try:
            return call()
        except os_exc.RequestError as exc:  # HTTP 400 for the whole request: a filter that does not parse
            raise UnsupportedSearchOption(
                f"OpenSearch refused the search on {self.name!r} (HTTP 400): {exc.error}: {_reason(exc.info)}"
            ) from None

    def _msearch(
        self, bodies: list[dict[str, Any]], fields: Sequence[str] | None, to_score: Any, neural: bool = False
    ) -> SearchHits:
        responses: list[dict[str, Any]] = []
        step = self.settings.search_batch
        for start in range(0, len(bodies), step):
            request: list[dict[str, Any]] = []
            for body in bodies[start : start + step]:
                request += [{"index": self.name}, body]
            responses += self._request(lambda r=request: self.client.msearch(body=r))["responses"]
        return self._collect(responses, fields, to_score, neural)

    def _collect(
        self, responses: list[dict[str, Any]], fields: Sequence[str] | None, to_score: Any, neural: bool = False
    ) -> SearchHits:
        ids: list[list[str]] = []
        scores: list[list[float]] = []
        hit_fields: list[list[dict[str, Any]]] | None = [] if fields else None
        for response in responses:
            if "error" in response:
                _raise_search_error(self.name, response, neural)
            hits = response["hits"]["hits"]
            ids.append([hit["_id"] for hit in hits])
            scores.append([to_score(hit["_score"]) for hit in hits])
            if hit_fields is not None:
                hit_fields.append([hit.get("_source", {}) for hit in hits])
        return SearchHits(ids=ids, scores=scores, fields=hit_fields)

    def delete(self) -> None:
        """Drop the index."""
        self.client.indices.delete(index=self.name, ignore_unavailable=True)
