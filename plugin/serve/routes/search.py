"""Search: ``/search``, top-k documents of one query or a list from the index ingestion filled."""

from __future__ import annotations

import asyncio
import functools
import time

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from retrosearch.core.index.base import mode_needs_vectors
from retrosearch.plugin.serve.engine import EngineError
from retrosearch.plugin.serve.errors import ApiError
from retrosearch.plugin.serve.schemas import SearchRequest, SearchResponse
from retrosearch.plugin.serve.state import PROTECTED, ServiceState, json_response, service

router = APIRouter(tags=["search"], dependencies=PROTECTED)


@router.post("/search", response_model=SearchResponse,
             summary="Top-k documents of one query or a list, from the index ingestion filled.")
async def search(body: SearchRequest, state: ServiceState = Depends(service)) -> Response:
    started = time.perf_counter()
    queries = body.queries
    state.check_texts(queries, "query")
    if body.k > state.serve.max_k:
        raise ApiError(422, f"k={body.k} is above this server's limit of {state.serve.max_k}", "k")
    engine, embedder = state.require_engine()
    if engine.index is None:
        raise ApiError(404, "this service was started without an index; only /embed and /v1/embeddings "
                       "are served", code="no_index")
    vectors, hits = None, None
    if mode_needs_vectors(body.mode):
        # Plain dense top-k on an in-process index: the batcher searches the whole batch at once.
        in_batch = body.mode == "dense" and not body.filter and not body.fields and embedder.searches
        engine, encoded = await state.encode(queries, "query", body.k if in_batch else None)
        vectors, hits = encoded.vectors, encoded.hits
        if hits is not None:
            state.metrics.search_seconds.observe(encoded.search_seconds)
    if hits is None:
        searched = time.perf_counter()
        try:
            call = functools.partial(engine.search, vectors, body.k, body.filter, body.fields, texts=queries,
                                     mode=body.mode, dense_weight=body.hybrid_weight,
                                     normalization=body.hybrid_normalization)
            hits = await asyncio.get_running_loop().run_in_executor(state.executor, call)
        except EngineError as exc:
            raise ApiError(exc.status, exc.message, exc.param) from None
        state.metrics.search_seconds.observe(time.perf_counter() - searched)
    results = []
    for q, query in enumerate(queries):
        fields = hits.fields[q] if body.fields and hits.fields is not None else None
        ranked = enumerate(zip(hits.ids[q], hits.scores[q]), start=1)
        results.append({"query": query, "hits": [
            {"id": doc_id, "score": score, "rank": rank, **({"fields": fields[rank - 1]} if fields else {})}
            for rank, (doc_id, score) in ranked
        ]})
    payload = {"results": results, "model": engine.model_name, "k": body.k,
               "took_ms": round((time.perf_counter() - started) * 1000, 3)}
    if isinstance(body.query, str):
        payload["hits"] = results[0]["hits"]
    return json_response(payload)
