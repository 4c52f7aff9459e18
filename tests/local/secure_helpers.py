"""The secured 3-node cluster of the test suite's ``secure`` phase, and commands run against it as users do.

scripts/test.sh starts the cluster once for the phase (``retrosearch opensearch start --nodes 3 --secure
--with-ml --port $RETROSEARCH_SECURE_OPENSEARCH_PORT``), runs ``-m secure`` and stops it. Commands run as
subprocesses, given all three node URLs, with the user, the password file and the CA only in the
environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrosearch.local.opensearch import cluster, security
from retrosearch.local.opensearch.node_config import ServerSettings

PORT = int(os.environ.get("RETROSEARCH_SECURE_OPENSEARCH_PORT", "9270"))


def _missing(message: str) -> None:
    """A failure in the phase that needs it (RETROSEARCH_REQUIRE_SECURE_OPENSEARCH=1), else a skip."""
    if os.environ.get("RETROSEARCH_REQUIRE_SECURE_OPENSEARCH") == "1":
        pytest.fail(message)
    pytest.skip(message)


def secured_cluster() -> cluster.ClusterSettings:
    """The phase's green secured 3-node cluster, described with the plugins it runs (so a node restarted
    by a test comes back as it was)."""
    group = cluster.running(ServerSettings(port=PORT), nodes=3, secure=True)
    info = cluster.status(group)
    if info["health"] != "green" or info["number_of_nodes"] != 3:
        _missing(
            f"no green secured 3-node cluster at {group.urls} ({info['health']}, {info['number_of_nodes']} "
            f"nodes); start one: retrosearch opensearch start --nodes 3 --secure --with-ml --port {PORT}"
        )
    return group


def require_ml(group: cluster.ClusterSettings) -> None:
    """The cluster must run ml-commons and neural-search (started with --with-ml)."""
    if not group.with_ml:
        _missing(
            f"the secured cluster at {group.urls[0]} runs without ml-commons and neural-search "
            f"(start it with --with-ml)"
        )


def passwords(group: cluster.ClusterSettings) -> dict[str, str]:
    """Each user's password, read from its 0600 file."""
    return {
        user: security.password_file(group.cluster_dir, user).read_text().strip() for user in security.USERS
    }


def run_as(
    group: cluster.ClusterSettings, user: str | None, *args: str, check: bool = True, **env_changes: str
) -> subprocess.CompletedProcess:
    """``retrosearch ARGS`` as ``user`` (None: no credentials), all node URLs given, secrets only in files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSEARCH_OPENSEARCH_")}
    env.update(HF_HUB_OFFLINE="1", COLUMNS="200")
    if user is not None:
        env.update(cluster.client_environment(group, user))
    else:
        env["RETROSEARCH_OPENSEARCH_CA_CERTS"] = str(security.ca_file(group.cluster_dir))
    env.update(env_changes)
    proc = subprocess.run(
        [sys.executable, "-m", "retrosearch.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    for password in passwords(group).values():
        assert password not in proc.stdout + proc.stderr, f"a password was printed by retrosearch {args[0]}"
    if check and proc.returncode != 0:
        raise AssertionError(
            f"retrosearch {' '.join(args)} as {user} failed ({proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def index_as(
    group: cluster.ClusterSettings, user: str, collection: Path, model: Path, name: str, check: bool = True
) -> subprocess.CompletedProcess:
    """``retrosearch index`` of ``collection`` into the OpenSearch index ``name`` as ``user``."""
    return run_as(group, user, "index", "--collection", str(collection), "--model", str(model),
                  "--backend", "opensearch", "--index-name", name, *url_args(group), "--quiet", check=check)


def url_args(group: cluster.ClusterSettings) -> list[str]:
    """``--opensearch-url`` repeated and comma-separated at once: both reach the client as three nodes."""
    return ["--opensearch-url", group.urls[0], "--opensearch-url", ",".join(group.urls[1:])]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a command that failed with exit 2 and no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def admin_json(group: cluster.ClusterSettings, path: str) -> dict:
    """GET ``path`` as admin, which must answer 200."""
    status, body = cluster.admin_request(group, path)
    assert status == 200, (path, status, body)
    return body


def client_as(group: cluster.ClusterSettings, user: str):
    """An opensearch-py client for every node as ``user``, over https with the cluster's CA."""
    from opensearchpy import OpenSearch  # lazy: only the tests that talk to the cluster directly need it

    return OpenSearch(
        hosts=group.urls,
        http_auth=(user, passwords(group)[user]),
        use_ssl=True,
        verify_certs=True,
        ca_certs=str(security.ca_file(group.cluster_dir)),
        timeout=60,
    )
