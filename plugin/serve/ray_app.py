"""``retrosearch serve --ray``: the same app as a Ray Serve application (replicas, autoscaling, GPUs).

Each replica opens its own engine and builds the very app of :mod:`retrosearch.plugin.serve.app`;
only the batcher differs: Ray Serve's ``@serve.batch`` gathers concurrent requests (sized by their
number of texts) and one batch at a time runs on the replica's encoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from retrosearch.core.config import ServeSettings, Settings
from retrosearch.plugin.serve.batcher import Encoded
from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine
from retrosearch.plugin.serve.metrics import ServiceMetrics

APP_NAME = "retrosearch"


class ServeBatchEmbedder:
    """An :class:`~retrosearch.plugin.serve.app.Embedder` on Ray Serve's batching."""

    def __init__(self, engine: QueryEngine, metrics: ServiceMetrics, serve_settings: ServeSettings) -> None:
        from ray import serve

        self.engine = engine
        self.metrics = metrics
        self._waiting = 0
        self._batched = serve.batch(
            max_batch_size=serve_settings.max_batch_size,
            batch_wait_timeout_s=serve_settings.max_wait_ms / 1000.0,
            batch_size_fn=lambda items: sum(len(texts) for texts, _mode in items),
        )(self._encode_batch)

    async def submit(self, texts: Sequence[str], mode: str, k: int | None = None) -> Encoded:
        # ``k`` is ignored (``searches`` is False): the app searches each request itself.
        self._waiting += 1
        try:
            return await self._batched((list(texts), mode))
        finally:
            self._waiting -= 1

    @property
    def depth(self) -> int:
        return self._waiting

    @property
    def searches(self) -> bool:
        return False

    def close(self) -> None:
        """Nothing to stop: Ray Serve owns the batching loop."""

    async def _encode_batch(self, items: list[tuple[list[str], str]]) -> list[Encoded]:
        out: list[Encoded | None] = [None] * len(items)
        for mode in ("query", "passage"):
            chosen = [i for i, (_texts, m) in enumerate(items) if m == mode]
            if not chosen:
                continue
            texts = [t for i in chosen for t in items[i][0]]
            loop = asyncio.get_running_loop()
            started = loop.time()
            vectors, tokens = await asyncio.to_thread(self.engine.encode, texts, mode)
            self.metrics.record_batch(len(texts), len(chosen), loop.time() - started)
            start = 0
            for i in chosen:
                end = start + len(items[i][0])
                out[i] = Encoded(vectors=np.asarray(vectors[start:end]), tokens=tokens[start:end])
                start = end
        return out  # type: ignore[return-value]


def _replica_class() -> Any:
    from ray import serve

    @serve.ingress()
    class RetroSearchReplica:
        """One replica: opens the engine at start, then serves the shared app."""

        def __init__(self, settings_json: str, index_dir: str | None, index_name: str | None, model: str | None) -> None:
            from pathlib import Path

            from retrosearch.core.startup import configure_process

            configure_process(serving=True)
            self.settings = Settings.model_validate_json(settings_json)
            target = IndexTarget(index_dir=Path(index_dir) if index_dir else None, index_name=index_name)
            self.engine = QueryEngine.open(self.settings, target, model=model)

        def __serve_build_asgi_app__(self):
            from retrosearch.plugin.serve.app import create_app

            return create_app(self.settings, self.engine, embedder=ServeBatchEmbedder, load_in_background=False)

    return RetroSearchReplica


def deployment_options(serve_settings: ServeSettings) -> dict[str, Any]:
    """Replicas or autoscaling bounds, resources per replica, and enough ongoing requests to fill a batch."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": serve_settings.num_cpus, "num_gpus": serve_settings.num_gpus},
        # Ray Serve's default of 5 ongoing requests per replica would cap every batch at 5.
        "max_ongoing_requests": max(2 * serve_settings.max_batch_size, 64),
        "name": "RetroSearchService",
    }
    if serve_settings.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = serve_settings.max_replicas_per_node
    if serve_settings.min_replicas is not None or serve_settings.max_replicas is not None:
        low = serve_settings.min_replicas if serve_settings.min_replicas is not None else 1
        high = serve_settings.max_replicas if serve_settings.max_replicas is not None else max(low, 1)
        if high < max(low, 1):
            raise ValueError(f"--max-replicas {high} is below --min-replicas {low}")
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "initial_replicas": max(low, 1),
            "target_ongoing_requests": serve_settings.max_batch_size,
        }
    else:
        options["num_replicas"] = serve_settings.num_replicas
    return options


def build_application(settings: Settings, target: IndexTarget, model: str | None) -> Any:
    """The bound Ray Serve application: one deployment of replicas, sized by ``settings.serve``."""
    from ray import serve

    replica = serve.deployment(_replica_class()).options(**deployment_options(settings.serve))
    return replica.bind(
        settings.model_dump_json(),
        str(target.index_dir) if target.index_dir else None,
        target.index_name,
        model,
    )


def run_ray(settings: Settings, target: IndexTarget, model: str | None) -> None:
    """Deploy on Ray Serve (a local Ray, or ``serve.ray_address``) and block until interrupted."""
    import signal
    import threading

    from ray import serve

    from retrosearch.core.ray_runtime import ensure_ray

    s = settings.serve
    ensure_ray(s.ray_address)
    serve.start(http_options={"host": s.host, "port": s.port}, proxy_location=s.proxy_location)
    serve.run(build_application(settings, target, model), name=APP_NAME, route_prefix="/", blocking=False)
    print(f"RetroSearch on Ray Serve at http://{s.host}:{s.port} (replicas: {deployment_options(s).get('num_replicas', 'autoscaling')})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
