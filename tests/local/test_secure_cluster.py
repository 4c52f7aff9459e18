"""Every OpenSearch path against a secured 3-node cluster, as users run OpenSearch in production.

scripts/test.sh starts the cluster once for this phase (``retrosearch opensearch start --nodes 3
--secure --port $RETROSEARCH_SECURE_OPENSEARCH_PORT``), runs ``-m secure`` and stops it. The
commands run as users do: as subprocesses, given all three node URLs, with the user, the password
file and the CA only in the environment.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrosearch.local.opensearch import cluster, security, server
from retrosearch.local.opensearch.node_config import ServerSettings
from tests.conftest import DATA

pytestmark = pytest.mark.secure

PORT = int(os.environ.get("RETROSEARCH_SECURE_OPENSEARCH_PORT", "9270"))


@pytest.fixture(scope="module")
def secured() -> cluster.ClusterSettings:
    """The secured 3-node cluster of the test phase; missing, a failure in that phase (which sets
    RETROSEARCH_REQUIRE_SECURE_OPENSEARCH=1) and a skip elsewhere."""
    group = cluster.cluster_settings(ServerSettings(port=PORT), nodes=3, secure=True, heap_given=False)
    info = cluster.status(group)
    if info["health"] != "green" or info["number_of_nodes"] != 3:
        message = (
            f"no green secured 3-node cluster at {group.urls} ({info['health']}, {info['number_of_nodes']} "
            f"nodes); start one: retrosearch opensearch start --nodes 3 --secure --port {PORT}"
        )
        if os.environ.get("RETROSEARCH_REQUIRE_SECURE_OPENSEARCH") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return group


def _passwords(group: cluster.ClusterSettings) -> dict[str, str]:
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
    for password in _passwords(group).values():
        assert password not in proc.stdout + proc.stderr, f"a password was printed by retrosearch {args[0]}"
    if check and proc.returncode != 0:
        raise AssertionError(
            f"retrosearch {' '.join(args)} as {user} failed ({proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _urls(group: cluster.ClusterSettings) -> list[str]:
    # Repeated and comma-separated at once: both forms reach the client as three nodes.
    return ["--opensearch-url", group.urls[0], "--opensearch-url", ",".join(group.urls[1:])]


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _admin_json(group: cluster.ClusterSettings, path: str) -> dict:
    status, body = cluster.admin_request(group, path)
    assert status == 200, (path, status, body)
    return body


def test_the_cluster_is_green_with_three_nodes_over_https_only(secured):
    health = _admin_json(secured, "/_cluster/health")
    assert health["status"] == "green" and health["number_of_nodes"] == 3
    nodes = _admin_json(secured, "/_nodes/http")["nodes"].values()
    assert sorted(int(n["http"]["publish_address"].rsplit(":", 1)[1]) for n in nodes) == secured.ports
    plain = cluster.ClusterSettings(base=secured.base, nodes=3, secure=False)
    assert cluster.admin_request(plain, "/_cluster/health")[0] == 0  # no plain-http answer on any node


def test_secrets_are_private_and_never_on_a_command_line_or_in_a_log(secured):
    folder = security.credentials_dir(secured.cluster_dir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for user in security.USERS:
        assert stat.S_IMODE(security.password_file(secured.cluster_dir, user).stat().st_mode) == 0o600
    keys = list(secured.cluster_dir.rglob("*-key.pem"))
    assert len(keys) >= 2 * 3 + 2  # the CA's, the admin's, each node's and its copy in the node's config
    assert all(stat.S_IMODE(key.stat().st_mode) == 0o600 for key in keys)
    assert not list(
        secured.cluster_dir.glob("node-*/config/certs/ca-key.pem")
    )  # the CA key never leaves certs/

    passwords = _passwords(secured).values()
    pids = [server.read_pid(secured.node(port)) for port in secured.ports]
    assert all(pids)
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert not any(p in argv or p in environ for p in passwords)
    logs = [p for p in secured.cluster_dir.glob("node-*/logs/*") if p.is_file()]
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert not any(p in text for p in passwords), log
    printed = run_as(secured, None, "opensearch", "status", "--nodes", "3", "--secure", "--port", str(PORT))
    info = json.loads(printed.stdout)
    assert info["ca_certs"] == str(security.ca_file(secured.cluster_dir))
    assert info["export"]["writer"]["RETROSEARCH_OPENSEARCH_PASSWORD_FILE"].endswith("/credentials/writer")


def test_index_search_and_eval_as_writer_and_searcher_on_all_nodes(
    secured, small_scifact, tiny_bert, tmp_path
):
    name = "retrosearch-secure-cli"
    common = ["--model", str(tiny_bert), "--backend", "opensearch", "--index-name", name, *_urls(secured)]
    loaded = run_as(secured, "writer", "index", "--collection", str(small_scifact), *common, "--quiet")
    docs = len((small_scifact / "corpus.jsonl").read_text().splitlines())
    assert f"indexed {docs} documents" in loaded.stdout
    settings = _admin_json(secured, f"/{name}/_settings")[name]["settings"]["index"]
    assert settings["number_of_replicas"] == "1"  # one replica by default: a lost node loses no shard

    query = json.loads((small_scifact / "queries.jsonl").read_text().splitlines()[0])["text"]
    found = run_as(
        secured,
        "searcher",
        "search",
        "--index-name",
        name,
        *_urls(secured),
        "--model",
        str(tiny_bert),
        "--json",
        "-k",
        "3",
        query,
    )
    assert len(json.loads(found.stdout)[0]["hits"]) == 3
    out = tmp_path / "eval.json"
    run_as(
        secured,
        "searcher",
        "eval",
        "--collection",
        str(small_scifact),
        *common,
        "--json",
        str(out),
        "--quiet",
    )
    assert json.loads(out.read_text())["num_docs"] == docs


def test_the_searcher_cannot_write(secured, small_scifact, tiny_bert):
    proc = run_as(
        secured,
        "searcher",
        "index",
        "--collection",
        str(small_scifact),
        "--model",
        str(tiny_bert),
        "--backend",
        "opensearch",
        "--index-name",
        "retrosearch-secure-denied",
        *_urls(secured),
        "--quiet",
        check=False,
    )
    line = _one_line_error(proc)
    assert "HTTP 403" in line and "'searcher'" in line and secured.urls[0] in line
    assert "RETROSEARCH_OPENSEARCH_USER" in line
    assert cluster.admin_request(secured, "/retrosearch-secure-denied")[0] == 404  # nothing half-made


def _search(group, user, **env):
    return run_as(
        group,
        user,
        "search",
        "--index-name",
        "retrosearch-any",
        *_urls(group),
        "anything",
        check=False,
        **env,
    )


def test_a_wrong_password_is_one_line(secured, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    line = _one_line_error(_search(secured, "writer", RETROSEARCH_OPENSEARCH_PASSWORD_FILE=str(wrong)))
    assert "HTTP 401" in line and "'writer'" in line and secured.urls[0] in line
    assert "RETROSEARCH_OPENSEARCH_PASSWORD_FILE" in line


def test_missing_credentials_are_one_line(secured):
    line = _one_line_error(_search(secured, None))
    assert "needs credentials" in line and "RETROSEARCH_OPENSEARCH_USER" in line


def test_an_unknown_ca_is_one_line(secured, tmp_path):
    other = tmp_path / "other-cluster"
    security.ensure_certificates(other, [], "127.0.0.1")
    line = _one_line_error(
        _search(secured, "writer", RETROSEARCH_OPENSEARCH_CA_CERTS=str(security.ca_file(other)))
    )
    assert "not signed by a CA we trust" in line and "RETROSEARCH_OPENSEARCH_CA_CERTS" in line
    assert "'writer'" in line and secured.urls[0] in line


def test_plain_http_against_https_is_one_line(secured):
    http_urls = ",".join(u.replace("https://", "http://") for u in secured.urls)
    proc = run_as(
        secured,
        "writer",
        "search",
        "--index-name",
        "retrosearch-any",
        "--opensearch-url",
        http_urls,
        "anything",
        check=False,
    )
    line = _one_line_error(proc)
    assert "use https://" in line and "'writer'" in line and "http://127.0.0.1" in line


def _manager_and_others(group: cluster.ClusterSettings) -> tuple[int, list[int]]:
    manager_id = _admin_json(group, "/_cluster/state/cluster_manager_node")["cluster_manager_node"]
    nodes = _admin_json(group, "/_nodes/http")["nodes"]
    by_id = {node_id: int(n["http"]["publish_address"].rsplit(":", 1)[1]) for node_id, n in nodes.items()}
    return by_id[manager_id], [port for node_id, port in by_id.items() if node_id != manager_id]


def test_a_node_killed_during_a_ray_data_ingest_loses_and_doubles_nothing(secured, tiny_bert, tmp_path):
    """SIGKILL a data node while the writer's Ray Data ingest of a real collection runs: the job finishes
    on the other nodes without a rerun, every corpus id is in the index once, and the restarted node
    brings the cluster back to green."""
    corpus_file = DATA / "cranfield" / "corpus.jsonl"
    if not corpus_file.is_file():
        pytest.skip(f"shared data not found at {corpus_file}")
    corpus = [json.loads(line)["_id"] for line in corpus_file.read_text().splitlines()]
    name = "retrosearch-secure-ingest-fault"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSEARCH_OPENSEARCH_")}
    env.update(HF_HUB_OFFLINE="1", **cluster.client_environment(secured, "writer"))
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retrosearch.cli",
            "ingest",
            "-i",
            str(corpus_file),
            "--sink",
            "opensearch",
            "--model",
            str(tiny_bert),
            "--index-name",
            name,
            *_urls(secured),
            "--chunk-rows",
            "50",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _, victims = _manager_and_others(secured)
    victim = victims[-1]
    try:
        # Kill once documents are arriving (refresh is off while loading: count indexing operations).
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and job.poll() is None:
            status, stats = cluster.admin_request(secured, f"/{name}/_stats/indexing")
            if status == 200 and stats["_all"]["primaries"]["indexing"]["index_total"] >= 100:
                break
            time.sleep(0.5)
        assert job.poll() is None, (
            "the ingest ended before a node could be killed:\n" + job.communicate()[1][-2000:]
        )
        os.kill(server.read_pid(secured.node(victim)), signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, f"ingest failed after node {victim} was killed:\n{out[-2000:]}\n{err[-3000:]}"
    summary = json.loads(out[out.index("{") :])
    assert summary["failed"] == [] and summary["rows_written"] == len(corpus)
    _admin_json(secured, f"/{name}/_refresh")
    assert _admin_json(secured, f"/{name}/_count")["count"] == len(corpus)
    hits = _admin_json(secured, f"/{name}/_search?size=10000&_source=false&q=*:*")["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == sorted(corpus)  # each id exactly once

    restarted = time.monotonic()
    pid = cluster.restart_node(secured, victim)
    cluster.wait_green(secured, time.monotonic() + 300, {victim: pid})
    print(
        f"\nnode {victim} killed {restarted - killed_at:.0f} s before its restart; "
        f"green again {time.monotonic() - restarted:.0f} s after it"
    )
