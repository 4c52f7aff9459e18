"""Every OpenSearch path against a secured 3-node cluster, as users run OpenSearch in production:
the cluster itself, secrets, index/search/eval as writer and searcher, the one-line errors of bad
credentials and certificates, and a node killed during a Ray Data ingest (:mod:`tests.local.secure_helpers`
says how the phase starts the cluster and runs the commands).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from retrosearch.benchmarks import opensearch_faults as faults
from retrosearch.local.opensearch import cluster, security, server
from tests.conftest import DATA
from tests.local.secure_helpers import (
    PORT,
    admin_json,
    index_as,
    one_line_error,
    passwords,
    run_as,
    url_args,
)

pytestmark = pytest.mark.secure


def test_the_cluster_is_green_with_three_nodes_over_https_only(secured):
    health = admin_json(secured, "/_cluster/health")
    assert health["status"] == "green" and health["number_of_nodes"] == 3
    nodes = admin_json(secured, "/_nodes/http")["nodes"].values()
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

    secrets = passwords(secured).values()
    pids = [server.read_pid(secured.node(port)) for port in secured.ports]
    assert all(pids)
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert not any(p in argv or p in environ for p in secrets)
    logs = [p for p in secured.cluster_dir.glob("node-*/logs/*") if p.is_file()]
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert not any(p in text for p in secrets), log
    printed = run_as(secured, None, "opensearch", "status", "--nodes", "3", "--secure", "--port", str(PORT))
    info = json.loads(printed.stdout)
    assert info["ca_certs"] == str(security.ca_file(secured.cluster_dir))
    assert info["export"]["writer"]["RETROSEARCH_OPENSEARCH_PASSWORD_FILE"].endswith("/credentials/writer")


def test_index_search_and_eval_as_writer_and_searcher_on_all_nodes(
    secured, small_scifact, tiny_bert, tmp_path
):
    name = "retrosearch-secure-cli"
    common = ["--model", str(tiny_bert), "--backend", "opensearch", "--index-name", name, *url_args(secured)]
    loaded = run_as(secured, "writer", "index", "--collection", str(small_scifact), *common, "--quiet")
    docs = len((small_scifact / "corpus.jsonl").read_text().splitlines())
    assert f"indexed {docs} documents" in loaded.stdout
    settings = admin_json(secured, f"/{name}/_settings")[name]["settings"]["index"]
    assert settings["number_of_replicas"] == "1"  # one replica by default: a lost node loses no shard

    query = json.loads((small_scifact / "queries.jsonl").read_text().splitlines()[0])["text"]
    found = run_as(
        secured,
        "searcher",
        "search",
        "--index-name",
        name,
        *url_args(secured),
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
    proc = index_as(secured, "searcher", small_scifact, tiny_bert, "retrosearch-secure-denied", check=False)
    line = one_line_error(proc)
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
        *url_args(group),
        "anything",
        check=False,
        **env,
    )


def test_a_wrong_password_is_one_line(secured, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    line = one_line_error(_search(secured, "writer", RETROSEARCH_OPENSEARCH_PASSWORD_FILE=str(wrong)))
    assert "HTTP 401" in line and "'writer'" in line and secured.urls[0] in line
    assert "RETROSEARCH_OPENSEARCH_PASSWORD_FILE" in line


def test_missing_credentials_are_one_line(secured):
    line = one_line_error(_search(secured, None))
    assert "needs credentials" in line and "RETROSEARCH_OPENSEARCH_USER" in line


def test_an_unknown_ca_is_one_line(secured, tmp_path):
    other = tmp_path / "other-cluster"
    security.ensure_certificates(other, [], "127.0.0.1")
    line = one_line_error(
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
    line = one_line_error(proc)
    assert "use https://" in line and "'writer'" in line and "http://127.0.0.1" in line


def test_a_node_killed_during_a_ray_data_ingest_loses_and_doubles_nothing(secured, tiny_bert, tmp_path):
    """SIGKILL a data node while the writer's Ray Data ingest of a real collection runs: the job finishes
    on the other nodes without a rerun, every corpus id is in the index once, and the restarted node
    brings the cluster back to green."""
    corpus_file = DATA / "cranfield" / "corpus.jsonl"
    if not corpus_file.is_file():
        pytest.skip(f"shared data not found at {corpus_file}")
    name = "retrosearch-secure-ingest-fault"
    result = faults.ingest_with_node_kill(
        secured, corpus_file, str(tiny_bert), name, tmp_path / "state", extra=["--chunk-rows", "50"]
    )
    assert result["returncode"] == 0, f"ingest failed after node {result['victim']} was killed:\n" + result[
        "stderr_tail"
    ]
    assert result["summary"]["failed"] == [] and result["summary"]["rows_written"] == result["expected"]
    assert result["found"] == result["expected"]
    assert result["lost"] == 0 and result["duplicated"] == 0, result  # each id exactly once
    settings = admin_json(secured, f"/{name}/_settings")[name]["settings"]["index"]
    assert settings["number_of_replicas"] == "1"  # the ingest path too: one replica by default
    print(f"\nnode {result['victim']} killed during the ingest; green again "
          f"{result['green_after_restart_s']} s "
          "after its restart")
