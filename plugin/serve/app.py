"""The query API as one FastAPI app, the same in a plain uvicorn process and in a Ray Serve replica.

Routes (:mod:`.routes`: probes, embeddings, search) validate (4xx with a JSON error naming the
field), hand texts to the embedder, search the index off the event loop and count everything in
Prometheus metrics; they reach the shared :class:`~.state.ServiceState` as a dependency. How the
model is loaded is given from outside (:func:`create_app`'s ``load``), which is all that differs
between the two ways of running; both batch with the same :class:`~.batcher.DynamicBatcher`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retrosearch.core.config import ServeSettings, Settings
from retrosearch.plugin.serve.admission import QueueBudget
from retrosearch.plugin.serve.batcher import DynamicBatcher
from retrosearch.plugin.serve.engine import QueryEngine
from retrosearch.plugin.serve.errors import install_error_handlers
from retrosearch.plugin.serve.metrics import DefaultJSONBody, MetricsMiddleware, ServiceMetrics
from retrosearch.plugin.serve.routes import embeddings, probes, search
from retrosearch.plugin.serve.schemas import ErrorResponse
from retrosearch.plugin.serve.state import Embedder, EmbedderFactory, ServiceState

API_VERSION = "1"


def local_embedder(engine: QueryEngine, metrics: ServiceMetrics, serve: ServeSettings) -> Embedder:
    """The in-process dynamic batcher (one tokenizer thread, one consumer thread) within the replica's
    bound on held texts and tokens; it also searches an in-process index."""
    return DynamicBatcher(
        engine.tokenize, engine.encode_ids,
        max_batch_size=serve.max_batch_size, max_batch_tokens=serve.max_batch_tokens,
        max_wait_ms=serve.max_wait_ms,
        budget=QueueBudget(serve.max_queued_texts, serve.max_queued_tokens), on_batch=metrics.record_batch,
        search=engine.search if engine.searches_in_process else None,
    )


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
        responses={k: {"model": ErrorResponse} for k in (401, 413, 422, 429, 503)},
    )
    app.state.service = state
    app.add_middleware(DefaultJSONBody)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    install_error_handlers(app)
    for module in (probes, embeddings, search):
        app.include_router(module.router)
    return app
