"""The one lazily started Ray: a local instance sized for the machine, or an existing cluster.

Every Ray job of the project (ingestion, training, serving) goes through :func:`ensure_ray`, so a
laptop run and a cluster run differ only by ``address``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from retrosearch.core.startup import forwarded_environment

# A local Ray's default object store takes ~30% of RAM; ingestion streams, so 1 GiB is plenty.
_LOCAL_OBJECT_STORE = 1 << 30

# Ray Train's placement-group cleaner asks the dashboard's state API, every second, whether the
# training controller is alive. A local Ray starts without the dashboard, so every ask fails and
# the cleaner logs a warning each time: over a hundred lines a minute between a training's own
# progress lines. It can never succeed there, so its warnings say nothing.
_DASHBOARD_ONLY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def ensure_ray(address: str | None = None, num_cpus: int | None = None, **init_kwargs: Any) -> None:
    """Start (or join) Ray once per process; later calls are no-ops.

    ``address`` joins a running cluster (``auto``, ``ray://host:10001`` or ``host:6379``), and so
    does Ray's own ``RAY_ADDRESS`` variable when no address is given; without either a local
    instance with ``num_cpus`` CPUs (default: all), a small object store and no dashboard is started.
    """
    import ray  # lazy: keeps ray out of importing this module

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True, **init_kwargs}
    if address:
        options["address"] = address
    else:
        options.setdefault("num_cpus", num_cpus or os.cpu_count() or 1)
        options.setdefault("object_store_memory", _LOCAL_OBJECT_STORE)
        options.setdefault("include_dashboard", False)
        # Ray kills idle workers beyond one per CPU within a second; when actors hold every CPU,
        # each short read or write task would then start (and import into) a new process.
        cpus = options["num_cpus"]
        # Ray runs its workers at nice 15 so that its own daemons stay responsive on a busy node; on
        # a machine it shares (with clients, OpenSearch, the driver) the actors that do the work then
        # lose every contended CPU slice (measured: a Serve replica got one core of two under load).
        options.setdefault("_system_config", {"num_workers_soft_limit": 2 * cpus + 4, "worker_niceness": 0})
    # Workers (actors, Train workers, Serve replicas) start with the driver's start-up settings.
    runtime_env: dict[str, Any] = {"env_vars": forwarded_environment()}
    if not options.get("include_dashboard", True):
        runtime_env["worker_process_setup_hook"] = f"{__name__}.{quiet_dashboard_only_warnings.__name__}"
    options.setdefault("runtime_env", runtime_env)
    ray.init(**options)


def quiet_dashboard_only_warnings() -> None:
    """Raise the loggers that can only fail without a dashboard to errors (a Ray worker set-up hook)."""
    for name in _DASHBOARD_ONLY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def cluster_resources() -> dict[str, float]:
    """CPUs and GPUs Ray can schedule on (starts a local Ray if none is running)."""
    import ray  # lazy: keeps ray out of importing this module

    ensure_ray()
    return dict(ray.cluster_resources())
