"""The local Ray the project starts: its workers' start-up settings."""

from __future__ import annotations

import logging


def test_workers_of_a_local_ray_quiet_the_warnings_only_a_dashboard_could_stop(ray_local):
    import ray

    from retrosearch.core.ray_runtime import _DASHBOARD_ONLY_LOGGERS

    @ray.remote(num_cpus=0)
    def levels(names: tuple[str, ...]) -> dict[str, int]:
        return {name: logging.getLogger(name).getEffectiveLevel() for name in names}

    quieted = ray.get(levels.remote(_DASHBOARD_ONLY_LOGGERS))
    assert quieted == dict.fromkeys(_DASHBOARD_ONLY_LOGGERS, logging.ERROR)
    # Only those: the workers' other Ray warnings still reach the driver.
    assert ray.get(levels.remote(("ray.train",)))["ray.train"] <= logging.WARNING
