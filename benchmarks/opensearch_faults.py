"""Faults on a local OpenSearch cluster, measured: a data node killed (SIGKILL) and restarted under
query load or during a Ray Data ingest, and the whole cluster stopped and started under a running
query service.

One place for the load, the kill and the measurements, used both by the test suite's ``secure``
phase (which asserts on the figures) and by ``retrosearch bench opensearch-cluster`` (which prints
them for the docs):

* :class:`QueryLoad`: clients posting ``/search`` to the query service in a loop, each request's
  start, latency, HTTP status and error reason recorded;
* :func:`query_load_with_node_kill`: that load before, during and after a node's loss, with p50/p99
  per phase, the failed requests by status and the time the cluster took back to green;
* :func:`ingest_with_node_kill`: ``retrosearch ingest`` with a node killed once documents arrive,
  then the ids lost and duplicated in the index;
* :func:`cluster_restart_under_service`: every node stopped and started while the service runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from retrosearch.core.process import http_json
from retrosearch.local.opensearch import cluster, server
from retrosearch.local.opensearch.cluster import ClusterSettings

# A client's pause between two requests of the fault runs' query load (seconds).
PAUSE_S = 0.05


class FaultRunError(RuntimeError):
    """A fault run could not go as planned (the load ended before the kill, a node never came back)."""


# -- the cluster -----------------------------------------------------------------------------------
def admin_json(group: ClusterSettings, path: str) -> Any:
    """GET ``path`` as admin; the JSON body, or :class:`FaultRunError` naming the status."""
    status, body = cluster.admin_request(group, path)
    if status != 200:
        raise FaultRunError(f"GET {path} on {group.urls[0]} answered {status}: {body}")
    return body


def manager_and_others(group: ClusterSettings) -> tuple[int, list[int]]:
    """The HTTP port of the elected cluster manager and those of the other nodes."""
    manager_id = admin_json(group, "/_cluster/state/cluster_manager_node")["cluster_manager_node"]
    nodes = admin_json(group, "/_nodes/http")["nodes"]
    by_id = {node_id: int(n["http"]["publish_address"].rsplit(":", 1)[1]) for node_id, n in nodes.items()}
    return by_id[manager_id], sorted(port for node_id, port in by_id.items() if node_id != manager_id)


def pick_victim(group: ClusterSettings) -> int:
    """A data node that is not the cluster manager: losing it costs shard copies, not an election."""
    return manager_and_others(group)[1][-1]


def kill_node(group: ClusterSettings, port: int) -> float:
    """SIGKILL the node on ``port``, as a crash or an OOM kill would; the monotonic time of the kill."""
    pid = server.read_pid(group.node(port))
    if pid is None:
        raise FaultRunError(f"no node of ours runs on port {port}")
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def restart_until_green(group: ClusterSettings, port: int, timeout_s: float = 400.0) -> float:
    """Start the node on ``port`` again and wait for green with all nodes; seconds that took."""
    began = time.monotonic()
    pid = cluster.restart_node(group, port)
    cluster.wait_green(group, began + timeout_s, {port: pid})
    return time.monotonic() - began


def index_ids(group: ClusterSettings, index: str) -> list[str]:
    """Every ``_id`` in ``index`` (refreshed first), as many times as it is there (up to 10,000 documents)."""
    admin_json(group, f"/{index}/_refresh")
    count = admin_json(group, f"/{index}/_count")["count"]
    if count > 10_000:
        raise FaultRunError(f"{index} holds {count} documents; the id check reads at most 10,000")
    hits = admin_json(group, f"/{index}/_search?size=10000&_source=false&q=*:*")["hits"]["hits"]
    return [hit["_id"] for hit in hits]


def id_check(expected: Sequence[str], found: Sequence[str]) -> dict[str, Any]:
    """Ids ``expected`` but missing, and ids found more than once (with examples)."""
    counts = Counter(found)
    lost = sorted(set(expected) - set(counts))
    doubled = sorted(i for i, n in counts.items() if n > 1)
    return {
        "expected": len(expected),
        "found": len(found),
        "lost": len(lost),
        "duplicated": len(doubled),
        "lost_examples": lost[:5],
        "duplicated_examples": doubled[:5],
    }


def user_environment(group: ClusterSettings, user: str | None) -> dict[str, str]:
    """This process's environment pointed at the cluster as ``user`` (secrets as file names only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROSEARCH_OPENSEARCH_")}
    env["HF_HUB_OFFLINE"] = "1"
    if user is not None:
        env.update(cluster.client_environment(group, user))
    return env


# -- the query service -----------------------------------------------------------------------------
def start_service(
    group: ClusterSettings,
    index: str,
    port: int,
    api_key_env: str,
    api_key: str,
    log: Path,
    user: str = "searcher",
    extra: Sequence[str] = (),
    wait_s: float = 300.0,
) -> subprocess.Popen:
    """``retrosearch serve --index-name INDEX`` as ``user`` in a process of its own, requiring the API key
    (passed in the environment only); returns once ``/readyz`` answers 200."""
    env = user_environment(group, user)
    env[api_key_env] = api_key
    argv = [
        sys.executable,
        "-m",
        "retrosearch.cli",
        "serve",
        "--index-name",
        index,
        "--opensearch-url",
        ",".join(group.urls),
        "--port",
        str(port),
        "--api-key-env",
        api_key_env,
        *extra,
    ]
    out = log.open("ab")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    out.close()
    deadline = time.monotonic() + wait_s
    while http_json(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise FaultRunError(
                f"the query service on port {port} did not become ready:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.5)
    return proc


def stop_service(proc: subprocess.Popen) -> None:
    """SIGTERM the service and wait for it (SIGKILL after 20 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- query load ------------------------------------------------------------------------------------
@dataclass
class Request:
    """One ``/search`` request: when it began (monotonic), its latency, status (0: no answer), reason."""

    started: float
    seconds: float
    status: int
    mode: str
    reason: str | None = None


@dataclass
class QueryLoad:
    """``clients`` threads posting one query each to ``{url}/search`` in a loop until :meth:`stop`.

    Client ``i`` sends mode ``modes[i % len(modes)]`` and walks ``queries`` from its own offset; it
    waits ``pause_s`` after each answer, as users do between queries (0: back to back).
    """

    url: str
    queries: Sequence[str]
    clients: int = 8
    modes: Sequence[str] = ("dense",)
    k: int = 10
    api_key: str | None = None
    timeout_s: float = 60.0
    pause_s: float = 0.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)
        ]

    def _client(self, i: int) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        mode = self.modes[i % len(self.modes)]
        n = i * 7
        with httpx.Client(timeout=self.timeout_s, headers=headers) as client:
            while not self._stop.is_set():
                body = {"query": self.queries[n % len(self.queries)], "k": self.k, "mode": mode}
                n += 1
                began = time.monotonic()
                try:
                    answer = client.post(f"{self.url}/search", json=body)
                    status, reason = answer.status_code, None
                    if status != 200:
                        try:
                            reason = answer.json()["error"]["message"]
                        except (ValueError, KeyError, TypeError):
                            reason = answer.text[:300]
                except httpx.HTTPError as exc:
                    status, reason = 0, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.requests.append(Request(began, time.monotonic() - began, status, mode, reason))
                if self.pause_s:
                    self._stop.wait(self.pause_s)

    @property
    def count(self) -> int:
        """Requests answered (or failed) so far."""
        return len(self.requests)

    def start(self) -> "QueryLoad":
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, count: int, timeout_s: float = 600.0) -> None:
        """Block until ``count`` requests have finished in all."""
        deadline = time.monotonic() + timeout_s
        while self.count < count:
            if time.monotonic() > deadline:
                raise FaultRunError(f"only {self.count} of {count} requests finished in {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self) -> list[Request]:
        """Stop every client after its request in flight; all requests, in finishing order."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        return list(self.requests)


def latency_stats(requests: Sequence[Request]) -> dict[str, Any]:
    """Count, failures by status, and p50/p99 (ms) of the successful requests."""
    ok = [r.seconds * 1000 for r in requests if r.status == 200]
    failed = Counter(str(r.status) for r in requests if r.status != 200)
    return {
        "requests": len(requests),
        "failed": sum(failed.values()),
        "failed_by_status": dict(failed),
        "p50_ms": round(float(np.percentile(ok, 50)), 1) if ok else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 1) if ok else None,
    }


def phases(requests: Sequence[Request], fault_at: float, recovered_at: float) -> dict[str, dict[str, Any]]:
    """:func:`latency_stats` of the requests begun before the fault, until recovery, and after it."""
    return {
        "before": latency_stats([r for r in requests if r.started < fault_at]),
        "during": latency_stats([r for r in requests if fault_at <= r.started < recovered_at]),
        "after": latency_stats([r for r in requests if r.started >= recovered_at]),
    }


def failures(requests: Sequence[Request], limit: int = 5) -> dict[str, Any]:
    """The failed requests that broke the promise (anything but a 503 with a reason), and examples of each."""
    broken = [r for r in requests if r.status != 200 and not (r.status == 503 and r.reason)]
    examples: dict[str, list[str]] = {}
    for r in requests:
        if r.status != 200 and len(examples.setdefault(str(r.status), [])) < limit:
            examples[str(r.status)].append(f"{r.mode}: {r.reason}")
    return {"not_503_with_reason": len(broken), "examples": examples}


def query_load_with_node_kill(
    group: ClusterSettings,
    service_url: str,
    queries: Sequence[str],
    *,
    clients: int = 8,
    modes: Sequence[str] = ("dense",),
    min_requests: int = 1000,
    before: int = 200,
    after: int = 200,
    down_s: float = 5.0,
    api_key: str | None = None,
    victim: int | None = None,
    green_timeout_s: float = 400.0,
    pause_s: float = PAUSE_S,
) -> dict[str, Any]:
    """Query load on the service while a data node is SIGKILLed, left down ``down_s`` seconds and
    restarted: ``before`` requests first, the load kept up until the cluster is green again, then
    ``after`` more (and at least ``min_requests`` in all). Each client pauses ``pause_s`` between its
    requests, so the load leaves the restarting node some CPU on a small machine. Per phase p50/p99
    and failures, the same for each mode alone, and the seconds from the restart to green."""
    victim = victim if victim is not None else pick_victim(group)
    load = QueryLoad(
        service_url, queries, clients=clients, modes=modes, api_key=api_key, pause_s=pause_s
    ).start()
    try:
        load.wait_for(before)
        killed_at = kill_node(group, victim)
        time.sleep(down_s)
        restarted_at = time.monotonic()
        green_s = restart_until_green(group, victim, green_timeout_s)
        green_at = time.monotonic()
        load.wait_for(max(min_requests, load.count + after))
    finally:
        requests = load.stop()
    return {
        "victim": victim,
        "clients": clients,
        "pause_s": pause_s,
        "modes": list(modes),
        "requests": len(requests),
        "down_s": round(restarted_at - killed_at, 1),
        "green_after_restart_s": round(green_s, 1),
        "phases": phases(requests, killed_at, green_at),
        "by_mode": {
            m: {"total": latency_stats(mine), **phases(mine, killed_at, green_at)}
            for m in modes
            for mine in [[r for r in requests if r.mode == m]]
        },
        **failures(requests),
    }


def cluster_restart_under_service(
    group: ClusterSettings,
    service_url: str,
    query: str,
    api_key: str | None = None,
    start_timeout_s: float = 400.0,
) -> dict[str, Any]:
    """Every node stopped and started again while the service runs: what ``/search`` answered while
    the cluster was down, and the seconds from the start until it answered 200 again (the service
    itself is not touched)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def ask() -> tuple[int, str | None]:
        answer = httpx.post(
            f"{service_url}/search", json={"query": query, "k": 5}, headers=headers, timeout=60
        )
        reason = None if answer.status_code == 200 else answer.json().get("error", {}).get("message")
        return answer.status_code, reason

    before = ask()
    cluster.stop(group)
    down = [ask() for _ in range(5)]
    began = time.monotonic()
    cluster.start(group, wait_s=start_timeout_s)
    green_s = time.monotonic() - began
    while True:
        status, reason = ask()
        if status == 200 or time.monotonic() - began > start_timeout_s:
            break
        time.sleep(0.5)
    return {
        "before": before[0],
        "while_down": sorted({s for s, _ in down}),
        "down_reasons": sorted({r or "" for _, r in down})[:3],
        "after": status,
        "green_after_start_s": round(green_s, 1),
        "answering_200_after_start_s": round(time.monotonic() - began, 1),
    }


# -- ingest ------------------------------------------------------------------------------------------
def ingest_argv(
    corpus: Path, model: str, index: str, urls: Sequence[str], state_dir: Path, extra: Sequence[str] = ()
) -> list[str]:
    """``retrosearch ingest`` of ``corpus`` into the OpenSearch ``index`` (a fresh state folder)."""
    return [
        sys.executable,
        "-m",
        "retrosearch.cli",
        "ingest",
        "-i",
        str(corpus),
        "--sink",
        "opensearch",
        "--model",
        model,
        "--index-name",
        index,
        "--opensearch-url",
        ",".join(urls),
        "--state-dir",
        str(state_dir),
        *extra,
    ]


def _summary(out: str) -> dict[str, Any]:
    return json.loads(out[out.index("{") :]) if "{" in out else {}


def ingest_with_node_kill(
    group: ClusterSettings,
    corpus: Path,
    model: str,
    index: str,
    state_dir: Path,
    *,
    user: str = "writer",
    kill_after_docs: int = 100,
    extra: Sequence[str] = (),
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """``retrosearch ingest`` as ``user`` with a data node SIGKILLed once ``kill_after_docs`` documents
    were indexed; after the job: its exit code and summary, the ids lost and duplicated against the
    corpus, and the seconds the restarted node took to bring the cluster back to green."""
    expected = [json.loads(line)["_id"] for line in corpus.read_text().splitlines() if line.strip()]
    victim = pick_victim(group)
    began = time.monotonic()
    job = subprocess.Popen(
        ingest_argv(corpus, model, index, group.urls, state_dir, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_environment(group, user),
    )
    try:
        deadline = time.monotonic() + timeout_s
        # Refresh is off while loading: count indexing operations, not searchable documents.
        while time.monotonic() < deadline and job.poll() is None:
            status, stats = cluster.admin_request(group, f"/{index}/_stats/indexing")
            # A fresh index's stats may have no primaries yet.
            primaries = (stats or {}).get("_all", {}).get("primaries", {}) if status == 200 else {}
            if primaries.get("indexing", {}).get("index_total", 0) >= kill_after_docs:
                break
            time.sleep(0.5)
        if job.poll() is not None:
            raise FaultRunError(
                "the ingest ended before a node could be killed:\n" + job.communicate()[1][-2000:]
            )
        kill_node(group, victim)
        out, err = job.communicate(timeout=timeout_s)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    seconds = time.monotonic() - began
    checked = id_check(expected, index_ids(group, index)) if job.returncode == 0 else {}
    green_s = restart_until_green(group, victim)
    return {
        "victim": victim,
        "returncode": job.returncode,
        "seconds": round(seconds, 1),
        "summary": _summary(out),
        "stderr_tail": err[-3000:] if job.returncode else "",
        "green_after_restart_s": round(green_s, 1),
        **checked,
    }


def ingest_throughput(
    corpus: Path,
    model: str,
    index: str,
    urls: Sequence[str],
    env: dict[str, str],
    state_dir: Path,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Docs/s of one ``retrosearch ingest`` into ``index`` (the job's wall time, Ray start included)."""
    began = time.monotonic()
    proc = subprocess.run(
        ingest_argv(corpus, model, index, urls, state_dir, extra), capture_output=True, text=True, env=env
    )
    seconds = time.monotonic() - began
    if proc.returncode != 0:
        raise FaultRunError(
            f"ingest into {index} at {urls[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    docs = _summary(proc.stdout).get("rows_written", 0)
    return {"docs": docs, "seconds": round(seconds, 1), "docs_per_s": round(docs / seconds, 2)}
