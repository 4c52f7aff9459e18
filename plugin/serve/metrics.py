"""Prometheus metrics of the query service, and the ASGI middleware that records requests.

Each app has its own registry, so several apps in one process (tests, a benchmark) never clash,
and ``/metrics`` shows exactly this service's figures.

Overload, per replica (what an autoscaler outside Ray Serve, e.g. a Kubernetes HPA or KEDA on
Prometheus, should watch): ``retrosearch_queued_texts`` and ``retrosearch_queued_tokens`` (work
held: waiting or in the forward pass) against ``retrosearch_queue_limit{unit}``;
``retrosearch_queue_fill`` (the fuller of the two shares, 0 to 1: scale out well before 1);
``retrosearch_rejected_requests_total{reason}`` (429 answers, by the bound that refused them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the route

if TYPE_CHECKING:
    from retrosearch.plugin.serve.admission import QueueStatus

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Request counts and latencies by endpoint and status, batch sizes, queue depth and overload.

    ``queue_status`` reports the replica's held work against its bound (None before the model
    is loaded).
    """

    def __init__(self, queue_depth: Callable[[], float] | None = None,
                 queue_status: Callable[[], "QueueStatus | None"] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "retrosearch_requests", "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "retrosearch_request_seconds", "HTTP request latency by endpoint.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_texts = Histogram(
            "retrosearch_batch_texts", "Texts per forward pass of the batcher.",
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_requests = Histogram(
            "retrosearch_batch_requests", "Requests sharing one forward pass.",
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.encode_seconds = Histogram(
            "retrosearch_encode_seconds", "Time of one batched forward pass (tokenization included).",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.search_seconds = Histogram(
            "retrosearch_search_seconds", "Time of one index search call.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.texts = Counter("retrosearch_texts_encoded", "Texts encoded.", registry=self.registry)
        self.queue_depth = Gauge(
            "retrosearch_queue_depth", "Requests admitted and not yet answered by the encoder.",
            registry=self.registry
        )
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        self.queued_texts = Gauge(
            "retrosearch_queued_texts", "Texts held by this replica (waiting or in the forward pass).",
            registry=self.registry,
        )
        self.queued_tokens = Gauge(
            "retrosearch_queued_tokens", "Tokens of the texts held by this replica.", registry=self.registry
        )
        self.queue_limit = Gauge(
            "retrosearch_queue_limit", "Most texts or tokens this replica holds before it answers 429.",
            ["unit"], registry=self.registry,
        )
        self.queue_fill = Gauge(
            "retrosearch_queue_fill",
            "Share of this replica's bound in use (the fuller of texts and tokens); 429 answers near 1.",
            registry=self.registry,
        )
        if queue_status is not None:
            def read(attribute: str) -> Callable[[], float]:
                return lambda: float(getattr(queue_status(), attribute, 0) or 0)

            self.queued_texts.set_function(read("texts"))
            self.queued_tokens.set_function(read("tokens"))
            self.queue_limit.labels("texts").set_function(read("max_texts"))
            self.queue_limit.labels("tokens").set_function(read("max_tokens"))
            self.queue_fill.set_function(read("fill"))
        self.rejections = Counter(
            "retrosearch_rejected_requests",
            "Requests refused with 429 because the replica's bound was reached, by bound (texts or tokens).",
            ["reason"], registry=self.registry,
        )
        self.in_flight = Gauge("retrosearch_requests_in_flight", "Requests being answered.", registry=self.registry)

    def record_batch(self, texts: int, requests: int, seconds: float) -> None:
        """Called by the batcher after every forward pass."""
        self.batch_texts.observe(texts)
        self.batch_requests.observe(requests)
        self.encode_seconds.observe(seconds)
        self.texts.inc(texts)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body copy) counting every HTTP request.

    The endpoint label is the matched route's path template, so ids in URLs never explode the
    label set; unmatched paths count as ``other``.
    """

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


class DefaultJSONBody:
    """Treat a POST body sent without a JSON content type (``curl -d`` sends a form type) as JSON.

    Every body this API takes is JSON; refusing ``curl -d '{...}'`` over a header would only
    puzzle people.
    """

    _FORM = (b"", b"application/x-www-form-urlencoded", b"text/plain")

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            current = dict(scope["headers"]).get(b"content-type", b"")
            if current.split(b";")[0].strip().lower() in self._FORM:
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
