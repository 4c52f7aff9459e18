"""``retrosearch bench opensearch-cluster``: one plain node against a secured cluster with replicas, and
the secured cluster's faults, as the figures of docs/guides/opensearch-production.md.

In one run, on the same corpus and model:

1. ingest throughput (docs/s, the ingest job's wall time) into the plain single node (no security, no
   replica) and into the secured cluster as ``writer`` (TLS, one replica);
2. the query service on the secured cluster's index as ``searcher`` with an API key, connected by
   ``admin`` as OpenSearch's model; a data node SIGKILLed and restarted under dense and ``neural``
   ``/search`` load: requests failed, p50/p99 before/during/after, seconds back to green;
3. a data node SIGKILLed during a second ingest: exit code, ids lost and duplicated, back to green;
4. every node stopped and started under the running service: what ``/search`` answered meanwhile.

Both clusters must be running (``retrosearch opensearch start --port P`` and ``retrosearch opensearch
start --nodes 3 --secure --with-ml --port Q``); the command creates indices named ``retrosearch-bench-*``
and removes them, its models and the service afterwards. The work is in :mod:`.opensearch_faults`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from retrosearch.benchmarks.docs_block import DocsPage, splice
from retrosearch.core import cli_options as opt
from retrosearch.core.config import Settings
from retrosearch.core.process import free_ports, http_json
from retrosearch.core.retrieval.report import write_json
from retrosearch.local.opensearch import cluster
from retrosearch.local.opensearch.node_config import ServerSettings

KEY_ENV = "RETROSEARCH_BENCH_SERVICE_KEY"
BLOCK_START = (
    "<!-- bench-opensearch-cluster:start (written by retrosearch bench opensearch-cluster --docs-page) -->"
)
BLOCK_END = "<!-- bench-opensearch-cluster:end -->"
PLAIN_INDEX = "retrosearch-bench-plain"
SECURE_INDEX = "retrosearch-bench-secure"
FAULT_INDEX = "retrosearch-bench-fault"



def _queries(corpus: Path) -> list[str]:
    """The collection's queries (its queries.jsonl beside the corpus), else the corpus' titles."""
    source = corpus.parent / "queries.jsonl"
    rows = [
        json.loads(line) for line in (source if source.is_file() else corpus).read_text().splitlines() if line
    ]
    texts = [row.get("text") or row.get("title") or "" for row in rows]
    return [t for t in texts if t.strip()][:500]


def _connect(group: cluster.ClusterSettings, service_url: str, api_key: str) -> dict[str, Any]:
    """``retrosearch opensearch connect`` of the service to the secured index, as admin."""
    # lazy: keeps httpx and numpy out of CLI start-up
    from retrosearch.benchmarks.opensearch_faults import FaultRunError, user_environment

    env = {**user_environment(group, "admin"), KEY_ENV: api_key}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrosearch.cli",
            "opensearch",
            "connect",
            "--service-url",
            service_url,
            "--index-name",
            SECURE_INDEX,
            "--opensearch-url",
            ",".join(group.urls),
            "--api-key-env",
            KEY_ENV,
            "--json-out",
            "-",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise FaultRunError(f"opensearch connect failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _remove(group: cluster.ClusterSettings, connection: dict[str, Any] | None) -> None:
    """The benchmark's indices, models, connectors and pipelines, as admin."""
    for model in (connection or {}).get("models", {}).values():
        cluster.admin_request(group, f"/_plugins/_ml/models/{model['model_id']}/_undeploy", method="POST")
        cluster.admin_request(group, f"/_plugins/_ml/models/{model['model_id']}", method="DELETE")
        cluster.admin_request(group, f"/_plugins/_ml/connectors/{model['connector_id']}", method="DELETE")
    for kind, name in (connection or {}).get("pipelines", {}).items():
        cluster.admin_request(group, f"/_{kind}/pipeline/{name}", method="DELETE")
    for index in (SECURE_INDEX, FAULT_INDEX):
        cluster.admin_request(group, f"/{index}", method="DELETE")


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ms(stats: dict[str, Any]) -> str:
    return f"{stats['p50_ms']} / {stats['p99_ms']}" if stats["p50_ms"] is not None else "-"


def markdown(result: dict[str, Any]) -> str:
    """The two tables of the guide: ingest throughput, then faults."""
    ingest = result["ingest"]
    lines = [
        f"Model {result['model']}, {result['docs']} documents of {result['corpus']}, {result['cpus']} CPUs.",
        "",
        _row("cluster", "docs", "seconds", "docs/s"),
        _row("---", "---:", "---:", "---:"),
    ]
    for name, label in (
        ("plain", "1 node, no security, no replica"),
        ("secure", "3 nodes, TLS + users, 1 replica"),
    ):
        lines.append(_row(label, ingest[name]["docs"], ingest[name]["seconds"], ingest[name]["docs_per_s"]))
    load = result["query_kill"]
    lines += [
        "",
        _row(
            "fault (3 secured nodes, a data node SIGKILLed, restarted)",
            "requests",
            "failed",
            "p50 / p99 ms before",
            "during",
            "after",
            "ids lost / duplicated",
            "green after restart",
        ),
        _row("---", "---:", "---", "---:", "---:", "---:", "---:", "---:"),
    ]
    for mode, stats in load["by_mode"].items():
        failed = stats["total"]["failed_by_status"] or {}
        lines.append(
            _row(
                f"/search load, {mode} ({load['clients']} clients in all)",
                stats["total"]["requests"],
                ", ".join(f"{n} x HTTP {s}" for s, n in failed.items()) or "0",
                _ms(stats["before"]),
                _ms(stats["during"]),
                _ms(stats["after"]),
                "-",
                f"{load['green_after_restart_s']} s",
            )
        )
    kill = result["ingest_kill"]
    lines.append(
        _row(
            "Ray Data ingest (writer)",
            f"{kill.get('expected', '-')} docs",
            "0 (exit 0)" if kill["returncode"] == 0 else f"exit {kill['returncode']}",
            "-",
            "-",
            "-",
            f"{kill.get('lost', '-')} / {kill.get('duplicated', '-')}",
            f"{kill['green_after_restart_s']} s",
        )
    )
    restart = result["cluster_restart"]
    lines.append(
        _row(
            "all 3 nodes stopped, started (service kept running)",
            "-",
            f"HTTP {', '.join(map(str, restart['while_down']))} while down",
            "-",
            "-",
            "-",
            "-",
            f"{restart['green_after_start_s']} s "
            f"(200 again after {restart['answering_200_after_start_s']} s)",
        )
    )
    return "\n".join(lines)


@opt.with_settings(opt.MODEL, opt.OPENSEARCH_URL)
def opensearch_cluster(
    corpus: Annotated[
        Path,
        typer.Option(
            help="JSONL corpus (a BEIR corpus.jsonl; its queries.jsonl gives the queries of the load)."
        ),
    ],
    port: Annotated[int, typer.Option(help="First HTTP port of the running secured local cluster.")] = 9270,
    nodes: Annotated[int, typer.Option(help="Nodes of the secured local cluster.")] = 3,
    limit: Annotated[int | None, typer.Option(help="Use only the first N documents.")] = None,
    clients: Annotated[int, typer.Option(help="Concurrent clients of the query load.")] = 8,
    requests: Annotated[int, typer.Option(help="Requests of the query load, at least.")] = 1000,
    json_out: opt.JsonOut = None,
    docs_page: DocsPage = None,
    settings: Settings = None,
) -> None:
    """Ingest docs/s on one plain node vs the secured cluster with replicas, and the secured cluster's
    faults (a node killed under query load and during an ingest, all nodes restarted) as a Markdown table."""
    # lazy: keeps httpx and numpy out of CLI start-up
    from retrosearch.benchmarks import opensearch_faults as faults

    plain_url = settings.opensearch.url.split(",")[0]
    if http_json(plain_url + "/", timeout=5)[0] != 200:
        raise opt.fail(
            f"no plain OpenSearch answers at {plain_url}; start one: retrosearch opensearch start "
            "--port PORT, and give --opensearch-url http://127.0.0.1:PORT"
        )
    group = cluster.running(ServerSettings(port=port), nodes=nodes, secure=True)
    health = cluster.status(group)
    if health["health"] != "green" or not group.with_ml:
        raise opt.fail(
            f"no green secured {nodes}-node cluster with the ML plugins at {group.urls[0]} "
            f"({health['health']}); start one: retrosearch opensearch start --nodes {nodes} --secure "
            f"--with-ml --port {port}"
        )
    model = settings.encoder.model
    result: dict[str, Any] = {
        "model": model,
        "corpus": str(corpus),
        "cpus": os.cpu_count(),
        "clients": clients,
    }
    connection = None
    service = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs = corpus
        if limit is not None:
            docs = work / "corpus.jsonl"
            docs.write_text("".join(corpus.open().readlines()[:limit]))
        result["docs"] = sum(1 for line in docs.read_text().splitlines() if line.strip())
        try:
            plain_env = faults.user_environment(group, None)
            result["ingest"] = {
                "plain": faults.ingest_throughput(
                    docs, model, PLAIN_INDEX, [plain_url], plain_env, work / "s1"
                ),
                "secure": faults.ingest_throughput(
                    docs,
                    model,
                    SECURE_INDEX,
                    group.urls,
                    faults.user_environment(group, "writer"),
                    work / "s2",
                ),
            }
            typer.echo(f"ingest: {json.dumps(result['ingest'])}", err=True)
            key = secrets.token_hex(16)
            service_port = free_ports()[0]
            service = faults.start_service(
                group, SECURE_INDEX, service_port, KEY_ENV, key, work / "serve.log"
            )
            service_url = f"http://127.0.0.1:{service_port}"
            connection = _connect(group, service_url, key)
            result["query_kill"] = faults.query_load_with_node_kill(
                group,
                service_url,
                _queries(corpus),
                clients=clients,
                modes=("dense", "neural"),
                min_requests=requests,
                api_key=key,
            )
            typer.echo(
                f"query load with a node killed: {result['query_kill']['requests']} requests", err=True
            )
            result["ingest_kill"] = faults.ingest_with_node_kill(group, docs, model, FAULT_INDEX, work / "s3")
            typer.echo("ingest with a node killed: done", err=True)
            result["cluster_restart"] = faults.cluster_restart_under_service(
                group, service_url, _queries(corpus)[0], api_key=key
            )
        finally:
            if service is not None:
                faults.stop_service(service)
            _remove(group, connection)
            _delete_plain(plain_url)
    table = markdown(result)
    result["markdown"] = table
    if docs_page is not None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        measured = f"Measured {day} with `retrosearch bench opensearch-cluster`."
        splice(
            docs_page, "\n".join([BLOCK_START, "", measured, table, "", BLOCK_END]), BLOCK_START, BLOCK_END
        )
    if json_out:
        write_json(json_out, result)
        if opt.to_stdout(json_out):
            return
    typer.echo(json.dumps(result, indent=1))
    typer.echo(table)


def _delete_plain(url: str) -> None:
    """Drop the plain node's benchmark index."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(urllib.request.Request(f"{url}/{PLAIN_INDEX}", method="DELETE"), timeout=30).close()
    except OSError:
        pass  # already gone
