"""`retrosearch opensearch ...` is a command group with its own help, over plugin/opensearch/ (assembly, node_config, server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrosearch.cli", "opensearch", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_help_names_every_command():
    proc = _cli("--help")
    assert proc.returncode == 0
    for command in ("start", "stop", "status", "assemble", "connect", "deploy-model"):
        assert command in proc.stdout
    start_help = _cli("start", "--help").stdout
    assert "--plugin" in start_help and "--setting" in start_help and "--heap" in start_help
    assert "--with-ml" in start_help
    connect_help = _cli("connect", "--help").stdout
    assert "--service-url" in connect_help and "--trust-endpoint" in connect_help
    deploy_help = _cli("deploy-model", "--help").stdout
    assert "--model" in deploy_help and "--index-name" in deploy_help and "--json" in deploy_help


def test_status_of_a_port_where_nothing_runs_exits_1():
    proc = _cli("status", "--port", "9")
    assert proc.returncode == 1 and json.loads(proc.stdout)["answering"] is False
    assert "no node of ours" in _cli("stop", "--port", "9").stdout
    bad = _cli("start", "--port", "9", "--setting", "novalue")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


@pytest.mark.integration
def test_status_of_the_test_node(opensearch_url: str):
    port = urlsplit(opensearch_url).port
    proc = _cli("status", "--port", str(port))
    info = json.loads(proc.stdout)
    assert proc.returncode == 0 and info["answering"] and "opensearch-knn" in info["plugins"]
