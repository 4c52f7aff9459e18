"""The query API as one FastAPI app, the same in a plain uvicorn process and in a Ray Serve replica.

Routes validate (4xx with a JSON error naming the field), hand texts to the batcher, search the
index off the event loop and count everything in Prometheus metrics. How the model is loaded and
how batches are formed are given from outside (:func:`create_app`'s ``load`` and ``embedder``),
which is all that differs between the two ways of running.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrosearch.core.config import ServeSettings, Settings
from retrosearch.core.index.base import mode_needs_vectors
from retrosearch.plugin.serve.batcher import BatcherClosed, DynamicBatcher, Encoded
from retrosearch.plugin.serve.engine import EngineError, QueryEngine
from retrosearch.plugin.serve.metrics import CONTENT_TYPE_LATEST, DefaultJSONBody, MetricsMiddleware, ServiceMetrics
from retrosearch.plugin.serve.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    SearchRequest,
    SearchResponse,
)

log = logging.getLogger(__name__)

API_VERSION = "1"


class Embedder(Protocol):
    """Turns a request's texts into vectors as part of a batch (local batcher or Ray Serve's)."""

    async def submit(self, texts: Sequence[str], mode: str, k: int | None = None) -> Encoded: ...

    @property
    def depth(self) -> int: ...

    @property
    def searches(self) -> bool:
        """Whether ``submit(..., k=...)`` answers with hits (else the app searches by itself)."""
        ...

    def close(self) -> None: ...


EmbedderFactory = Callable[[QueryEngine, ServiceMetrics, ServeSettings], Embedder]


def local_embedder(engine: QueryEngine, metrics: ServiceMetrics, serve: ServeSettings) -> Embedder:
    """The in-process dynamic batcher with one consumer thread; it also searches an in-process index."""
    return DynamicBatcher(engine.encode, serve.max_batch_size, serve.max_wait_ms, on_batch=metrics.record_batch,
                          search=engine.search if engine.searches_in_process else None)


class ApiError(Exception):
    """An error answer: HTTP status, a message, the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    503: "service_unavailable",
}


def _error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _json(payload: Any) -> Response:
    # orjson writes float32 arrays directly; FastAPI's encoder would walk every float in Python.
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _loc_to_param(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


class ServiceState:
    """What the routes share: settings, metrics, and (once loaded) the engine and the embedder."""

    def __init__(self, settings: Settings, load: Callable[[], QueryEngine], embedder: EmbedderFactory) -> None:
        self.settings = settings
        self.serve = settings.serve
        self._load = load
        self._embedder_factory = embedder
        self.engine: QueryEngine | None = None
        self.embedder: Embedder | None = None
        self.load_error: str | None = None
        self.metrics = ServiceMetrics(queue_depth=lambda: self.embedder.depth if self.embedder else 0)
        self.executor = ThreadPoolExecutor(max_workers=self.serve.search_threads, thread_name_prefix="retrosearch-search")
        self.api_key = self._read_api_key()
        self.started_at = time.time()

    def _read_api_key(self) -> str | None:
        name = self.serve.api_key_env
        if not name:
            return None
        key = os.environ.get(name, "")
        if not key:
            raise ValueError(f"--api-key-env {name}: that environment variable is not set or empty")
        return key

    def load(self) -> None:
        """Load the engine (in a thread: health checks answer meanwhile)."""
        try:
            engine = self._load()
            self.embedder = self._embedder_factory(engine, self.metrics, self.serve)
            self.engine = engine
            log.info("ready: %s", {k: v for k, v in engine.describe().items() if k != "documents"})
        except Exception as exc:  # noqa: BLE001 - reported through /readyz and the log
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("the model or index failed to load: %s", self.load_error)

    def require_engine(self) -> tuple[QueryEngine, Embedder]:
        """The engine, or a 503 saying why there is none yet."""
        if self.engine is None or self.embedder is None:
            reason = f"failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise ApiError(503, reason, code="not_ready")
        return self.engine, self.embedder

    def close(self) -> None:
        """Finish what is in hand and release threads."""
        if self.embedder is not None:
            self.embedder.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def create_app(
    settings: Settings,
    load: Callable[[], QueryEngine] | QueryEngine,
    embedder: EmbedderFactory = local_embedder,
    load_in_background: bool = True,
) -> FastAPI:
    """The query API; ``load`` opens the engine (or is one already opened)."""
    loader = (lambda: load) if isinstance(load, QueryEngine) else load
    state = ServiceState(settings, loader, embedder)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if load_in_background and not isinstance(load, QueryEngine):
            threading.Thread(target=state.load, name="retrosearch-load", daemon=True).start()
        else:
            state.load()
        yield
        state.close()

    app = FastAPI(
        title="RetroSearch query service",
        version=API_VERSION,
        description=(
            "Dense retrieval queries: embeddings (also OpenAI-compatible) and top-k search in the FAISS "
            "or OpenSearch index that ingestion filled, with the encoder that built it."
        ),
        lifespan=lifespan,
        responses={k: {"model": ErrorResponse} for k in (401, 413, 422, 503)},
    )
    app.state.service = state
    app.add_middleware(DefaultJSONBody)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    _install_error_handlers(app)

    async def require_key(request: Request) -> None:
        if state.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    protected = [Depends(require_key)]

    def check_texts(texts: Sequence[str], param: str) -> None:
        limits = state.serve
        if len(texts) > limits.max_texts:
            raise ApiError(413, f"{len(texts)} texts in {param}; this server takes at most {limits.max_texts} per request", param)
        for i, text in enumerate(texts):
            if len(text) > limits.max_chars:
                where = f"{param}[{i}]" if len(texts) > 1 or param != "query" else param
                raise ApiError(413, f"{where} has {len(text)} characters; the limit is {limits.max_chars}", where)

    async def encode(texts: list[str], mode: str, k: int | None = None) -> tuple[QueryEngine, Encoded]:
        engine, embedder_ = state.require_engine()
        try:
            return engine, await embedder_.submit(texts, mode, k)
        except BatcherClosed as exc:
            raise ApiError(503, str(exc), code="shutting_down") from None
        except EngineError as exc:  # the batcher's search
            raise ApiError(exc.status, exc.message, exc.param) from None
        except ValueError as exc:  # e.g. a template that leaves no room for the text
            raise ApiError(422, str(exc)) from None

    # -- probes and description -----------------------------------------------------------------
    @app.get("/healthz", tags=["probes"], summary="The process is up (answers while a batch computes).")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - state.started_at, 3)}

    @app.get("/readyz", tags=["probes"], summary="Model loaded and backend reachable; 503 with the reason otherwise.")
    async def readyz() -> Response:
        engine, _ = state.require_engine()
        reason = await asyncio.get_running_loop().run_in_executor(state.executor, engine.not_ready_reason)
        if reason:
            raise ApiError(503, reason, code="backend_unavailable")
        return _json({"status": "ready", "model": engine.model_name, "backend": engine.target.backend})

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics.", dependencies=protected)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/info", tags=["service"], summary="What is served: model, dimension, templates, index.", dependencies=protected)
    async def info() -> Response:
        engine, _ = state.require_engine()
        described = await asyncio.get_running_loop().run_in_executor(state.executor, engine.describe)
        limits = state.serve.model_dump(include={"max_batch_size", "max_wait_ms", "max_texts", "max_chars", "max_k", "embeddings_mode"})
        return _json({**described, "limits": limits})

    # -- embeddings -----------------------------------------------------------------------------
    @app.post("/embed", response_model=EmbedResponse, tags=["embeddings"], dependencies=protected,
              summary="Vectors of texts under the model's query or passage template.")
    async def embed(body: EmbedRequest) -> Response:
        check_texts(body.texts, "texts")
        engine, encoded = await encode(body.texts, body.mode)
        return _json({"vectors": encoded.vectors, "model": engine.model_name, "dim": engine.dim, "mode": body.mode})

    @app.post("/v1/embeddings", response_model=EmbeddingsResponse, tags=["embeddings"], dependencies=protected,
              summary="OpenAI-compatible embeddings (template: input_type, else the server's --embeddings-mode).")
    async def embeddings(body: EmbeddingsRequest) -> Response:
        texts = body.texts
        check_texts(texts, "input")
        engine, _ = state.require_engine()
        if body.model and body.model not in (engine.model_name, "retrosearch", engine.encoder.fingerprint):
            raise ApiError(404, f"model {body.model!r} is not served here; this service serves {engine.model_name!r}",
                           "model", code="model_not_found")
        if body.dimensions is not None and body.dimensions > engine.dim:
            raise ApiError(400, f"dimensions={body.dimensions} is not available; {engine.model_name} gives {engine.dim}",
                           "dimensions")
        engine, encoded = await encode(texts, body.input_type or state.serve.embeddings_mode)
        # Cut (and renormalise) as the encoder's own `dimensions` setting would: the same vectors either way.
        vectors = engine.encoder.cut(encoded.vectors, body.dimensions)
        if body.encoding_format == "base64":
            vectors = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
        tokens = int(encoded.tokens.sum())
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return _json({"object": "list", "data": data, "model": engine.model_name,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.get("/v1/models", tags=["embeddings"], dependencies=protected, summary="The served model, OpenAI style.")
    async def models() -> Response:
        engine, _ = state.require_engine()
        created = int(state.started_at)
        return _json({"object": "list", "data": [{"id": engine.model_name, "object": "model", "created": created,
                                                  "owned_by": "retrosearch"}]})

    # -- search ---------------------------------------------------------------------------------
    @app.post("/search", response_model=SearchResponse, tags=["search"], dependencies=protected,
              summary="Top-k documents of one query or a list, from the index ingestion filled.")
    async def search(body: SearchRequest) -> Response:
        started = time.perf_counter()
        queries = body.queries
        check_texts(queries, "query")
        if body.k > state.serve.max_k:
            raise ApiError(422, f"k={body.k} is above this server's limit of {state.serve.max_k}", "k")
        engine, embedder_ = state.require_engine()
        if engine.index is None:
            raise ApiError(404, "this service was started without an index; only /embed and /v1/embeddings are served",
                           code="no_index")
        vectors, hits = None, None
        if mode_needs_vectors(body.mode):
            # Plain dense top-k on an in-process index: the batcher searches the whole batch at once.
            in_batch = body.mode == "dense" and not body.filter and not body.fields and embedder_.searches
            engine, encoded = await encode(queries, "query", body.k if in_batch else None)
            vectors, hits = encoded.vectors, encoded.hits
            if hits is not None:
                state.metrics.search_seconds.observe(encoded.search_seconds)
        if hits is None:
            searched = time.perf_counter()
            try:
                hits = await asyncio.get_running_loop().run_in_executor(
                    state.executor, functools.partial(engine.search, vectors, body.k, body.filter, body.fields,
                                                      texts=queries, mode=body.mode, dense_weight=body.hybrid_weight,
                                                      normalization=body.hybrid_normalization)
                )
            except EngineError as exc:
                raise ApiError(exc.status, exc.message, exc.param) from None
            state.metrics.search_seconds.observe(time.perf_counter() - searched)
        results = []
        for q, query in enumerate(queries):
            fields = hits.fields[q] if body.fields and hits.fields is not None else None
            results.append({
                "query": query,
                "hits": [
                    {"id": doc_id, "score": score, "rank": rank, **({"fields": fields[rank - 1]} if fields else {})}
                    for rank, (doc_id, score) in enumerate(zip(hits.ids[q], hits.scores[q]), start=1)
                ],
            })
        payload = {"results": results, "model": engine.model_name, "k": body.k,
                   "took_ms": round((time.perf_counter() - started) * 1000, 3)}
        if isinstance(body.query, str):
            payload["hits"] = results[0]["hits"]
        return _json(payload)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error_response(exc.status, exc.message, exc.param, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _loc_to_param(first.get("loc", ()))
        messages = []
        for err in errors[:5]:
            where = _loc_to_param(err.get("loc", ()))
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            messages.append(f"{where}: {msg}")
        return _error_response(422, "; ".join(messages), param, code=str(first.get("type", "invalid")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

