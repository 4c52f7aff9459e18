"""The query service past its capacity: ``retrosearch bench serve --overload-seconds N``.

An open-loop load (requests sent at a fixed rate, whatever the answers) at a multiple of the
capacity measured just before, against a running service: every answer is counted by status,
latency is reported for the accepted (200) and the refused (429) requests apart, and the service
must answer ``/healthz``, ``/readyz`` and a search with 200 once the load stops. A closed loop
could not show overload: its clients slow down with the server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np


async def open_loop(url: str, queries: list[str], rate: float, seconds: float, k: int = 10,
                    timeout_s: float = 300.0) -> list[tuple[int, float, str | None]]:
    """``rate`` requests/s of ``POST /search`` for ``seconds``: (status, seconds, Retry-After) of each
    (status 0: no answer, a connection error or the client's timeout)."""
    import aiohttp  # lazy: keeps aiohttp out of importing this module

    answers: list[tuple[int, float, str | None]] = []

    async def one(session: aiohttp.ClientSession, query: str) -> None:
        started = time.perf_counter()
        retry_after = None
        try:
            async with session.post(f"{url}/search", json={"query": query, "k": k}) as response:
                await response.read()
                code, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            code = 0
        answers.append((code, time.perf_counter() - started, retry_after))

    total = max(1, int(rate * seconds))
    connector = aiohttp.TCPConnector(limit=0)  # open loop: as many connections as requests in flight
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, queries[i % len(queries)])))
        await asyncio.gather(*tasks)
    return answers


def _ms(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else None


def healthy_after(url: str, query: str) -> dict[str, int]:
    """Statuses of /healthz, /readyz and one search once the load is over."""
    import httpx  # lazy: keeps httpx out of importing this module

    with httpx.Client(timeout=60) as client:
        return {"healthz": client.get(f"{url}/healthz").status_code,
                "readyz": client.get(f"{url}/readyz").status_code,
                "search": client.post(f"{url}/search", json={"query": query, "k": 10}).status_code}


def server_rejections(url: str) -> float:
    """The service's own count of 429 answers (``retrosearch_rejected_requests_total``, all reasons)."""
    import httpx  # lazy: keeps httpx out of importing this module

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("retrosearch_rejected_requests_total{"))


def overload(url: str, queries: list[str], capacity_qps: float, factor: float,
             seconds: float) -> dict[str, Any]:
    """Offer ``factor`` x ``capacity_qps`` for ``seconds``; answers by kind, latencies, health after."""
    rate = factor * capacity_qps
    rejected_before = server_rejections(url)
    started = time.perf_counter()
    answers = asyncio.run(open_loop(url, queries, rate, seconds))
    wall = time.perf_counter() - started
    accepted = [s for code, s, _ in answers if code == 200]
    refused = [s for code, s, _ in answers if code == 429]
    statuses: dict[str, int] = {}
    for code, _, _ in answers:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    retry = [int(r) for code, _, r in answers if code == 429 and r is not None and r.isdigit()]
    return {
        "capacity_qps": capacity_qps, "factor": factor, "offered_qps": rate, "seconds": seconds,
        "wall_s": wall,
        "sent": len(answers), "accepted": len(accepted), "rejected": len(refused),
        "errors_5xx": sum(n for code, n in statuses.items() if code.startswith("5") or code == "0"),
        "statuses": dict(sorted(statuses.items())),
        "accepted_qps": len(accepted) / wall if wall else 0.0,
        "accepted_p50_ms": _ms(accepted, 50), "accepted_p99_ms": _ms(accepted, 99),
        "rejected_p50_ms": _ms(refused, 50), "rejected_p99_ms": _ms(refused, 99),
        "retry_after_s": {"min": min(retry), "max": max(retry)} if retry else None,
        "rejections_counted_by_server": server_rejections(url) - rejected_before,
        "healthy_after": healthy_after(url, queries[0]),
    }


def summary(run: dict[str, Any]) -> str:
    """One paragraph of the overload run for the report."""
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    health = run["healthy_after"]
    retry = run["retry_after_s"]
    hint = f"{retry['min']}-{retry['max']} s" if retry else "none"
    return (f"Overload: {run['offered_qps']:.0f} requests/s offered ({run['factor']:.1f}x the measured "
            f"{run['capacity_qps']:.0f}) for {run['seconds']:.0f} s: {run['sent']} sent, "
            f"{run['accepted']} accepted ({run['accepted_qps']:.1f}/s), {run['rejected']} refused with 429 "
            f"(Retry-After {hint}), {run['errors_5xx']} 5xx/failed; accepted p50 "
            f"{fmt(run['accepted_p50_ms'])} ms, p99 {fmt(run['accepted_p99_ms'])} ms; refused p99 "
            f"{fmt(run['rejected_p99_ms'])} ms; afterwards /healthz {health['healthz']}, "
            f"/readyz {health['readyz']}, search {health['search']}.")
