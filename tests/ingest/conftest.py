"""Ingest tests share the session's Ray, in this process and in the commands they run."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _commands_join_session_ray(cli_joins_session_ray: str) -> None:
    """Every ingest command a test runs joins the session's Ray (kill tests opt out per command)."""
