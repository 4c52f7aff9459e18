"""Fixtures of the fine-tuning tests: a small SciFact cut from its *train* split, and a local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import DATA, cut_collection


@pytest.fixture(scope="session")
def scifact_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 SciFact training queries, their relevant abstracts and 40 distractors (train qrels only)."""
    source = DATA / "scifact"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    return cut_collection(source, tmp_path_factory.mktemp("scifact-train"), num_queries=12, distractors=40, split="train")


@pytest.fixture(scope="session")
def local_ray():
    """One small local Ray for the session (2 CPUs, 1 GiB object store, no dashboard)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
