"""What the routes share, and how they reach it: ``app.state.service`` through FastAPI dependencies.

:class:`ServiceState` holds the settings, the metrics and (once loaded) the engine and the
embedder, and the steps every route takes alike: check a request's texts against the limits,
send them to the embedder (overload and failures become error answers), require the API key.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from retrosearch.core.config import ServeSettings, Settings
from retrosearch.plugin.serve.admission import Overloaded, QueueBudget
from retrosearch.plugin.serve.batcher import BatcherClosed, Encoded
from retrosearch.plugin.serve.engine import EngineError, QueryEngine
from retrosearch.plugin.serve.errors import ApiError
from retrosearch.plugin.serve.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns a request's texts into vectors as part of a batch, within a bound on held work."""

    async def submit(self, texts: Sequence[str], mode: str, k: int | None = None) -> Encoded: ...

    @property
    def depth(self) -> int:
        """Requests admitted and not yet answered."""
        ...

    @property
    def budget(self) -> QueueBudget:
        """The texts and tokens held against the replica's bound."""
        ...

    @property
    def searches(self) -> bool:
        """Whether ``submit(..., k=...)`` answers with hits (else the app searches by itself)."""
        ...

    def close(self) -> None: ...


EmbedderFactory = Callable[[QueryEngine, ServiceMetrics, ServeSettings], Embedder]


def json_response(payload: Any) -> Response:
    """A JSON answer written by orjson (it writes float32 arrays directly; FastAPI's encoder would
    walk every float in Python)."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


class ServiceState:
    """What the routes share: settings, metrics, and (once loaded) the engine and the embedder."""

    def __init__(self, settings: Settings, load: Callable[[], QueryEngine],
                 embedder: EmbedderFactory) -> None:
        self.settings = settings
        self.serve = settings.serve
        self._load = load
        self._embedder_factory = embedder
        self.engine: QueryEngine | None = None
        self.embedder: Embedder | None = None
        self.load_error: str | None = None
        self.metrics = ServiceMetrics(
            queue_depth=lambda: self.embedder.depth if self.embedder else 0,
            queue_status=lambda: self.embedder.budget.status() if self.embedder else None,
        )
        self.executor = ThreadPoolExecutor(max_workers=self.serve.search_threads,
                                           thread_name_prefix="retrosearch-search")
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

    def check_texts(self, texts: Sequence[str], param: str) -> None:
        """413 naming the field when a request has too many texts or too long a text."""
        limits = self.serve
        if len(texts) > limits.max_texts:
            raise ApiError(413, f"{len(texts)} texts in {param}; this server takes at most "
                           f"{limits.max_texts} per request", param)
        for i, text in enumerate(texts):
            if len(text) > limits.max_chars:
                where = f"{param}[{i}]" if len(texts) > 1 or param != "query" else param
                raise ApiError(413, f"{where} has {len(text)} characters; the limit is {limits.max_chars}",
                               where)

    async def encode(self, texts: list[str], mode: str, k: int | None = None) -> tuple[QueryEngine, Encoded]:
        """The engine and the texts' vectors (and hits, with ``k``, when the embedder searches)."""
        engine, embedder = self.require_engine()
        try:
            return engine, await embedder.submit(texts, mode, k)
        except Overloaded as exc:
            self.metrics.rejections.labels(exc.reason).inc()
            raise ApiError(429, exc.message, code="queue_full",
                           headers={"Retry-After": str(exc.retry_after_s)}) from None
        except BatcherClosed as exc:
            raise ApiError(503, str(exc), code="shutting_down") from None
        except EngineError as exc:  # the batcher's search
            raise ApiError(exc.status, exc.message, exc.param) from None
        except ValueError as exc:  # e.g. a template that leaves no room for the text
            raise ApiError(422, str(exc)) from None

    def close(self) -> None:
        """Finish what is in hand and release threads."""
        if self.embedder is not None:
            self.embedder.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def service(request: Request) -> ServiceState:
    """The dependency every route takes: the app's :class:`ServiceState`."""
    return request.app.state.service


async def require_key(request: Request, state: ServiceState = Depends(service)) -> None:
    """401 unless the request carries the API key (when the service has one)."""
    if state.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.api_key.encode()):
        raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                       code="invalid_api_key")


#: Route dependencies of everything but the probes.
PROTECTED = [Depends(require_key)]
