"""Fixtures of the local-cluster tests."""

from __future__ import annotations

import pytest

from retrosearch.local.opensearch import cluster
from tests.local.secure_helpers import secured_cluster


@pytest.fixture(scope="session")
def secured() -> cluster.ClusterSettings:
    """The secured 3-node cluster of the test phase; missing, a failure in that phase (which sets
    RETROSEARCH_REQUIRE_SECURE_OPENSEARCH=1) and a skip elsewhere."""
    return secured_cluster()
