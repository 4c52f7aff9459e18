"""Query-side speed: ``retrosearch bench serve``.

Real queries of a shared collection, the same model and FAISS index, four ways, in one run:

a. raw: the encoder runtime's forward pass at batch 1 in a fresh process, tokenization
   included, no HTTP (the floor a service can approach, never beat);
b. naive: a FastAPI server with one forward pass per request (retrosearch.benchmarks.naive_server);
c. ours: ``retrosearch serve --index DIR`` (dynamic batching, one consumer thread);
d. ours under ``--ray`` (the same app as a Ray Serve application, one replica).

b-d are separate server processes answering ``POST /search`` (k=10) over real HTTP, measured by a
closed-loop async client (httpx) at each concurrency level: latency p50/p99 and queries/s. Then a
soak of ``--soak`` requests at the highest concurrency against c counts every non-200 answer and
reports the server's resident memory before and after. With ``--overload-seconds``, c is then
offered an open-loop load at ``--overload-factor`` times the queries/s it just reached at the
highest concurrency (:mod:`retrosearch.benchmarks.serve_overload`): accepted and refused counts,
5xx, p50/p99 of the accepted requests, and its health afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from retrosearch.benchmarks.ingest_speed import in_fresh_process
from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.benchmarks.serve_overload import overload, summary
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import EncoderSettings, Settings
from retrosearch.core.process import ManagedProcess, free_ports, http_json
from retrosearch.core.retrieval.report import write_json
from retrosearch.core.startup import configure_process

console = Console()

LABELS = {
    "a_raw": "a. raw forward, batch 1, in-process",
    "b_naive": "b. naive FastAPI, 1 forward per request",
    "c_service": "c. retrosearch serve",
    "d_service_ray": "d. retrosearch serve --ray",
    "c2_service_onnx": "c2. retrosearch serve --runtime onnx",
    "c3_service_onnx_int8": "c3. retrosearch serve --runtime onnx --quantize int8",
}
SERVERS = ("b_naive", "c_service", "c2_service_onnx", "c3_service_onnx_int8", "d_service_ray")


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    values = np.asarray(latencies) * 1000.0
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean())}


def raw_forward(model: str, queries: list[str], repeats: int, runtime: str = "auto") -> dict[str, Any]:
    """(a) One query at a time through the runtime: tokenize + forward, nothing else."""
    from retrosearch.core.encoder import Encoder  # lazy: keeps torch, transformers out of CLI start-up

    configure_process()
    encoder = Encoder.load(EncoderSettings(model=model, show_progress=False, runtime=runtime), workload="queries")
    for query in queries[:20]:
        encoder.encode_queries([query])
    import torch  # lazy: keeps torch out of CLI start-up

    latencies, bare = [], []
    for i in range(repeats):
        query = queries[i % len(queries)]
        started = time.perf_counter()
        encoder.encode_queries([query])
        latencies.append(time.perf_counter() - started)
        # The bare forward pass on ready tensors: what the runtime's own per-call work is measured against.
        ids = torch.tensor([encoder.text_tokenizer.queries([query])[0]], device=encoder.device)
        started = time.perf_counter()
        with torch.inference_mode():
            encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids)).cpu()
        bare.append(time.perf_counter() - started)
    total = sum(latencies)
    overhead = float(np.median(np.asarray(latencies) - np.asarray(bare)) * 1000.0)
    return {"requests": repeats, "qps": repeats / total, **percentiles(latencies),
            "bare_forward_p50_ms": percentiles(bare)["p50_ms"], "runtime_overhead_p50_ms": overhead}


async def closed_loop(url: str, queries: list[str], concurrency: int, total: int, k: int = 10) -> dict[str, Any]:
    """``concurrency`` clients each sending the next query as soon as the last answer came back.

    aiohttp rather than httpx: on two cores the load generator shares the CPU with the server,
    and httpx's async client costs several times more CPU per request, which would be measured
    as server latency.
    """
    import aiohttp  # lazy: keeps aiohttp out of CLI start-up

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def client_loop(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = {"query": queries[i % len(queries)], "k": k}
            started = time.perf_counter()
            try:
                async with session.post(f"{url}/search", json=body) as response:
                    await response.read()
                    code = response.status
            except aiohttp.ClientError:
                code = 0
            latencies.append(time.perf_counter() - started)
            statuses[code] = statuses.get(code, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": total, "seconds": seconds, "qps": total / seconds,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, **percentiles(latencies)}


def _all_ok(name: str, run: dict[str, Any]) -> None:
    """A level with failed requests measures errors, not the server: stop with what came back."""
    if set(run["statuses"]) != {"200"}:
        raise RuntimeError(f"{name}: not every request succeeded at {run['concurrency']} clients: {run['statuses']}")


class Server:
    """A server process under test (started detached, found by its pid file, stopped at the end)."""

    def __init__(self, name: str, argv: list[str], port: int, run_dir: Path, marker: bytes) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.argv = argv
        self.process = ManagedProcess(name=name, run_dir=run_dir, marker=marker,
                                      healthy=lambda: http_json(f"{self.url}/readyz", timeout=2)[0] == 200)

    def __enter__(self) -> "Server":
        self.pid = self.process.start(self.argv, env=dict(os.environ), wait_s=600)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.process.stop(grace_s=30)

    def rss_mb(self) -> float | None:
        """Resident memory of the server process (without child processes)."""
        import psutil  # lazy: keeps psutil out of CLI start-up

        try:
            return psutil.Process(self.pid).memory_info().rss / 2**20
        except psutil.Error:
            return None



def measure_server(server: Server, queries: list[str], levels: list[int], requests: int) -> dict[str, Any]:
    """Warm up, then one closed loop per concurrency level."""
    asyncio.run(closed_loop(server.url, queries, 4, 100))
    runs = {}
    for level in levels:
        count = max(requests, 30 * level) if level > 1 else requests
        runs[str(level)] = asyncio.run(closed_loop(server.url, queries, level, count))
        _all_ok(server.process.name, runs[str(level)])
        console.print(f"  {level:>3} clients: p50 {runs[str(level)]['p50_ms']:.2f} ms, "
                      f"p99 {runs[str(level)]['p99_ms']:.2f} ms, {runs[str(level)]['qps']:.1f} q/s")
    return {"levels": runs}


def soak(server: Server, queries: list[str], concurrency: int, total: int) -> dict[str, Any]:
    """``total`` requests at ``concurrency``; every non-200 counted, memory sampled along the way.

    "Before" is taken after a warm-up of 1,000 requests at the same concurrency: the allocator
    keeps freed activation buffers for reuse (see core/encoder/device.py), so the first
    batches of each new size raise the resident size to a plateau that is not a leak.
    """
    asyncio.run(closed_loop(server.url, queries, concurrency, 1000))
    before = server.rss_mb()
    parts, samples, runs = 4, [before], []
    for _ in range(parts):
        runs.append(asyncio.run(closed_loop(server.url, queries, concurrency, total // parts)))
        samples.append(server.rss_mb())
    after = samples[-1]
    statuses: dict[str, int] = {}
    for run in runs:
        for code, n in run["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    latencies_p50 = float(np.median([r["p50_ms"] for r in runs]))
    seconds = sum(r["seconds"] for r in runs)
    errors_5xx = sum(v for k, v in statuses.items() if k.startswith("5") or k == "0")
    growth = (after - before) / before if before and after else None
    return {"concurrency": concurrency, "requests": sum(r["requests"] for r in runs), "seconds": seconds,
            "qps": sum(r["requests"] for r in runs) / seconds, "p50_ms": latencies_p50, "statuses": statuses,
            "rss_before_mb": before, "rss_after_mb": after, "rss_samples_mb": samples, "rss_growth": growth,
            "errors_5xx": errors_5xx}


def markdown(payload: dict[str, Any]) -> str:
    """The report as a Markdown table plus ratios and the soak line."""
    lines = [f"Query service speed: {payload['model']}, {payload['collection']} queries, FAISS flat over "
             f"{payload['documents']} documents, k=10, {payload['cpus']} CPUs.", "",
             "| run | clients | p50 ms | p99 ms | queries/s |", "|---|---:|---:|---:|---:|"]
    raw = payload["results"]["a_raw"]
    lines.append(f"| {LABELS['a_raw']} | 1 | {raw['p50_ms']:.2f} | {raw['p99_ms']:.2f} | {raw['qps']:.1f} |")
    for name in SERVERS:
        if name not in payload["results"]:
            continue
        for level, run in payload["results"][name]["levels"].items():
            lines.append(f"| {LABELS[name]} | {level} | {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['qps']:.1f} |")
    lines += ["", "  ".join(f"{k} = {v:.2f}" for k, v in payload["ratios"].items()), "",
              f"Runtime overhead of one query (tokenize, pad, copy out) over the bare forward pass: "
              f"{raw['runtime_overhead_p50_ms']:.3f} ms at p50 (bare forward {raw['bare_forward_p50_ms']:.2f} ms)."]
    if payload.get("overload"):
        lines += ["", summary(payload["overload"])]
    s = payload.get("soak")
    if s:
        lines += ["", f"Soak: {s['requests']} requests at {s['concurrency']} clients in {s['seconds']:.1f} s, "
                      f"{s['errors_5xx']} 5xx/failed, statuses {s['statuses']}; server RSS "
                      f"{s['rss_before_mb']:.0f} MB before, {s['rss_after_mb']:.0f} MB after "
                      f"({100 * (s['rss_growth'] or 0):+.1f}%)."]
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    """p50 latency and queries/s against concurrency, one line per server, raw as a reference."""
    plt = pyplot()

    fig, (lat, qps) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"b_naive": "#999999", "c_service": "#3b75af", "c2_service_onnx": "#8e6bbf",
              "c3_service_onnx_int8": "#d0743c", "d_service_ray": "#519e3e"}
    for name, color in colors.items():
        if name not in payload["results"]:
            continue
        levels = payload["results"][name]["levels"]
        xs = [int(x) for x in levels]
        lat.plot(xs, [levels[str(x)]["p50_ms"] for x in xs], "o-", color=color, label=LABELS[name])
        qps.plot(xs, [levels[str(x)]["qps"] for x in xs], "o-", color=color, label=LABELS[name])
    raw = payload["results"]["a_raw"]
    lat.axhline(raw["p50_ms"], color="black", linestyle=":", label="a. raw forward p50")
    qps.axhline(raw["qps"], color="black", linestyle=":", label="a. raw forward, batch 1")
    for ax, label in ((lat, "p50 latency, ms (lower is better)"), (qps, "queries/s (higher is better)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    qps.legend(fontsize=7)
    ratios = "  ".join(f"{k} = {v:.2f}" for k, v in payload["ratios"].items())
    # Wrapped: with the runtime variants there are more ratios than one line holds.
    fig.suptitle(textwrap.fill(f"{payload['model']} on {payload['collection']}, {payload['cpus']} CPUs: {ratios}", 150),
                 fontsize=8)
    save(fig, path)


@opt.with_settings(opt.MODEL)
def serve_speed(
    collection: Annotated[Path, typer.Option(help="BEIR folder whose queries (and corpus) are used.")],
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="FAISS folder of the collection.", show_default="built once into the cache")] = None,
    concurrency: Annotated[str, typer.Option(help="Comma-separated client counts.")] = "1,8,32",
    requests: Annotated[int, typer.Option(help="Requests per concurrency level (at least 30 per client).")] = 300,
    soak_requests: Annotated[int, typer.Option("--soak", help="Requests of the soak at the highest level (0: none).")] = 10_000,
    skip_ray: Annotated[bool, typer.Option(help="Leave out run d (Ray Serve)."),
                        *opt.deprecated("--no-ray", value=True), *opt.deprecated("--ray", value=False)] = False,
    runtime_variants: Annotated[
        bool, typer.Option(help="Also measure the service with ONNX Runtime, fp32 (c2) and int8 (c3).")
    ] = False,
    overload_seconds: Annotated[float, typer.Option(
        help="Then offer c an open-loop load past its capacity for this many seconds (0: none).")] = 0.0,
    overload_factor: Annotated[float, typer.Option(
        help="The overload's rate as a multiple of c's queries/s at the highest concurrency.")] = 2.0,
    overload_bound: Annotated[Optional[int], typer.Option(
        help="c's --max-queued-texts (unset: the service's own), to reach the bound in a short overload; "
        "at least the highest concurrency.")] = None,
    json_out: opt.JsonOut = None,
    settings: Settings = None,
) -> None:
    """Latency p50/p99 and queries/s of the query service against a raw forward pass and a naive server."""
    from retrosearch.core.retrieval import cached_faiss_index  # lazy: keeps torch, faiss out of CLI start-up

    beir = BeirCollection(collection)
    model = settings.encoder.model
    queries = [q.text for q in beir.queries.values()]
    index_dir = index_dir or cached_faiss_index(beir, settings)
    documents = len(json.loads((index_dir / "ids.json").read_text()))
    levels = [int(x) for x in concurrency.split(",") if x.strip()]
    if overload_bound is not None and overload_bound < max(levels):
        raise opt.fail(f"--overload-bound {overload_bound} is below the highest concurrency {max(levels)}: "
                       "the closed-loop levels would be refused")
    console.print(f"{len(queries)} queries of {beir.name}, index {index_dir} ({documents} documents)")
    results: dict[str, Any] = {}
    console.print("a. raw forward pass at batch 1 (fresh process)")
    # a, b and c run the same runtime (--runtime; auto: ONNX Runtime on a CPU), so the ratios are batching alone.
    runtime = settings.encoder.runtime
    results["a_raw"] = in_fresh_process(raw_forward, model, queries, requests, runtime)
    raw = results["a_raw"]
    console.print(f"  p50 {raw['p50_ms']:.2f} ms, {raw['qps']:.1f} q/s; bare forward p50 {raw['bare_forward_p50_ms']:.2f} ms, "
                  f"runtime overhead p50 {raw['runtime_overhead_p50_ms']:.3f} ms per query")
    servers = {
        "b_naive": [sys.executable, "-m", "retrosearch.benchmarks.naive_server", "--index", str(index_dir),
                    "--runtime", runtime],
        "c_service": [sys.executable, "-m", "retrosearch.cli", "serve", "--index", str(index_dir), "--runtime", runtime],
    }
    if runtime_variants:
        servers["c2_service_onnx"] = [*servers["c_service"], "--runtime", "onnx"]
        servers["c3_service_onnx_int8"] = [*servers["c_service"], "--runtime", "onnx", "--quantize", "int8"]
    if not skip_ray:
        # The replica gets the machine's CPUs, as c's process has them (Ray would give it one by default).
        servers["d_service_ray"] = [*servers["c_service"], "--ray", "--cpus-per-worker", str(os.cpu_count() or 1)]
    if overload_bound is not None:
        servers["c_service"] += ["--max-queued-texts", str(overload_bound)]
    soaked, overloaded = None, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in servers.items():
            port = free_ports()[0]
            console.print(f"{LABELS[name]} (port {port})")
            with Server(name, [*argv, "--port", str(port)], port, Path(tmp), marker=b"retrosearch") as server:
                results[name] = measure_server(server, queries, levels, requests)
                if name == "c_service" and soak_requests:
                    console.print(f"  soak: {soak_requests} requests at {max(levels)} clients")
                    soaked = soak(server, queries, max(levels), soak_requests)
                    console.print(f"  {soaked['errors_5xx']} 5xx, RSS {soaked['rss_before_mb']:.0f} -> "
                                  f"{soaked['rss_after_mb']:.0f} MB")
                if name == "c_service" and overload_seconds > 0:
                    capacity = results[name]["levels"][str(max(levels))]["qps"]
                    console.print(f"  overload: {overload_factor:.1f} x {capacity:.1f} q/s "
                                  f"for {overload_seconds:.0f} s")
                    overloaded = overload(server.url, queries, capacity, overload_factor, overload_seconds)
                    console.print("  " + summary(overloaded))
    top = str(max(levels))
    ratios = {"c p50@1 / a p50": results["c_service"]["levels"]["1"]["p50_ms"] / results["a_raw"]["p50_ms"],
              f"c qps@{top} / b qps@{top}": results["c_service"]["levels"][top]["qps"] / results["b_naive"]["levels"][top]["qps"]}
    for name in ("c2_service_onnx", "c3_service_onnx_int8"):
        if name in results:
            short = name.split("_")[0]
            ratios[f"c p50@1 / {short} p50@1"] = (
                results["c_service"]["levels"]["1"]["p50_ms"] / results[name]["levels"]["1"]["p50_ms"])
            ratios[f"{short} qps@{top} / b qps@{top}"] = (
                results[name]["levels"][top]["qps"] / results["b_naive"]["levels"][top]["qps"])
    if "d_service_ray" in results:
        ratios[f"d qps@{top} / b qps@{top}"] = (
            results["d_service_ray"]["levels"][top]["qps"] / results["b_naive"]["levels"][top]["qps"])
    payload = {"model": model, "collection": beir.name, "documents": documents, "queries": len(queries),
               "cpus": os.cpu_count(), "results": results, "ratios": ratios, "soak": soaked,
               "overload": overloaded}
    table = Table(title="query service speed", title_justify="left")
    for column in ("run", "clients", "p50 ms", "p99 ms", "q/s"):
        table.add_column(column, justify="right")
    table.add_row("a_raw", "1", f"{results['a_raw']['p50_ms']:.2f}", f"{results['a_raw']['p99_ms']:.2f}", f"{results['a_raw']['qps']:.1f}")
    for name in SERVERS:
        for level, run in results.get(name, {}).get("levels", {}).items():
            table.add_row(name, level, f"{run['p50_ms']:.2f}", f"{run['p99_ms']:.2f}", f"{run['qps']:.1f}")
    console.print(table)
    console.print("  ".join(f"{k} = {v:.3f}" for k, v in ratios.items()))
    if json_out:
        write_json(json_out, payload)
        json_out.with_suffix(".md").write_text(markdown(payload))
        plot(payload, json_out.with_suffix(".png"))
        console.print(f"wrote {json_out}, {json_out.with_suffix('.md')} and {json_out.with_suffix('.png')}")
