"""The Ray Serve config entry point (KubeRay RayService): the options of `retrosearch serve --ray`."""

from __future__ import annotations

import pytest

from retrosearch.plugin.serve.ray_entry import app_builder


def _deployment(argv: list[str]):
    return app_builder({"argv": argv})._bound_deployment


def test_builder_takes_the_command_options():
    fixed = _deployment(["--model", "minilm", "--ray", "--serve-replicas", "3", "--cpus-per-worker", "2",
                         "--gpus-per-worker", "0.5"])
    assert fixed.num_replicas == 3
    assert fixed.ray_actor_options == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert fixed.init_args[1:] == (None, None, "minilm")

    # The spellings before the rename still work for one release (the RayService of an older chart).
    old = _deployment(["--model", "minilm", "--ray", "--replicas", "2", "--num-cpus", "3", "--num-gpus", "0.25"])
    assert old.num_replicas == 2 and old.ray_actor_options == {"num_cpus": 3.0, "num_gpus": 0.25}

    scaled = _deployment(["--index-name", "docs", "--ray", "--min-replicas", "1", "--max-replicas", "4"])
    bounds = scaled._deployment_config.autoscaling_config
    assert (bounds.min_replicas, bounds.max_replicas) == (1, 4)
    assert scaled.init_args[1:] == (None, "docs", None)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"argv": ["--model", "minilm"]}, "--ray is missing"),
        ({"argv": "--model minilm --ray"}, "expects args"),
        ({"argv": ["--ray"]}, "refused"),
        ({"argv": ["--model", "minilm", "--ray", "--min-replicas", "3", "--max-replicas", "2"]}, "below --min-replicas"),
    ],
)
def test_builder_refuses_what_the_command_refuses(args, error):
    with pytest.raises(ValueError, match=error):
        app_builder(args)


def test_builder_refuses_unknown_options():
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        app_builder({"argv": ["--model", "minilm", "--ray", "--no-such-option", "1"]})


def test_requests_past_the_bound_reach_a_replica_to_be_refused():
    """Ray Serve must not queue in its proxy what a replica would refuse: the ongoing-request cap
    lies above what the bound admits (at least one text per admitted request)."""
    deployment = _deployment(["--model", "minilm", "--ray", "--max-queued-texts", "300",
                              "--max-batch-size", "16"])
    assert deployment.max_ongoing_requests == 300 + 64
    assert deployment.max_ongoing_requests > 300


def test_a_replica_s_encoder_threads_follow_its_cpus():
    from retrosearch.core.config import EncoderSettings, ServeSettings, Settings
    from retrosearch.plugin.serve.ray_app import replica_settings

    given = Settings(serve=ServeSettings(num_cpus=2.5))
    assert replica_settings(given).encoder.threads == 2 and given.encoder.threads is None
    assert replica_settings(Settings(serve=ServeSettings(num_cpus=0.5))).encoder.threads == 1
    chosen = Settings(encoder=EncoderSettings(threads=3), serve=ServeSettings(num_cpus=1))
    assert replica_settings(chosen).encoder.threads == 3


def test_a_local_ray_starts_with_the_chosen_ingress():
    """HAProxy ingress is Ray's own high-throughput mode, switched on by the environment its processes
    start with: set for a local Ray, never over what the user set, never for a cluster's Ray."""
    from retrosearch.core.config import ServeSettings
    from retrosearch.plugin.serve.ray_app import (HAPROXY_INGRESS, HAPROXY_PORTS, LOCAL_DRAIN,
                                                  ingress_environment)

    chosen = ingress_environment(ServeSettings(), environ={})
    assert {k: chosen[k] for k in HAPROXY_INGRESS} == HAPROXY_INGRESS
    # no external load balancer to wait for: a local replica drains in seconds, not Ray's 30
    assert {k: chosen[k] for k in LOCAL_DRAIN} == LOCAL_DRAIN
    # HAProxy's side listeners get free ports, so two local services do not collide.
    ports = [int(chosen[name]) for name in HAPROXY_PORTS]
    assert all(port > 0 for port in ports) and len(set(ports)) == 2
    assert ingress_environment(ServeSettings(ray_ingress="proxy"), environ={}) == {}
    kept = ingress_environment(ServeSettings(), environ={"RAY_SERVE_ENABLE_HA_PROXY": "0",
                                                         "RAY_SERVE_HAPROXY_STATS_PORT": "8404"})
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in kept and "RAY_SERVE_HAPROXY_STATS_PORT" not in kept
    assert kept["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert ingress_environment(ServeSettings(ray_address="ray://head:10001"), environ={}) == {}
    assert ingress_environment(ServeSettings(), environ={"RAY_ADDRESS": "auto"}) == {}
