"""A real query service on a free port: built from the CLI's own index, served over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.serve.http_helpers import run_cli


@pytest.fixture(scope="session")
def small_index(small_scifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FAISS folder of the small SciFact cut, written by `retrosearch index` as a user would."""
    out = tmp_path_factory.mktemp("serve") / "index"
    run_cli("index", "--collection", str(small_scifact), "--model", "minilm", "--out", str(out), "--quiet")
    return out


@pytest.fixture(scope="session")
def small_queries(small_scifact: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (small_scifact / "queries.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def faiss_engine(small_index: Path):
    """The engine the service runs on, opened in this process (shared by in-process apps)."""
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    return QueryEngine.open(Settings(), IndexTarget(index_dir=small_index))
