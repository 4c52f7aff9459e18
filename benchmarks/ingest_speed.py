"""Ingest speed: our Ray pipeline against the encoder's raw limit and a plain sentence-transformers loop.

Four measurements on the same model and documents, in one run:

a. raw: the encoder runtime's forward passes in one process over globally length-sorted batches
   (tokenization and model loading excluded): the most this machine can do.
b. sentence-transformers: ``SentenceTransformer(model).encode(texts)`` with its defaults, what a
   user writes without RetroSearch (model loading excluded).
c. RetroSearch ingest into FAISS (Ray Data: read, embed on an actor pool, write, build the index).
d. RetroSearch ingest into OpenSearch (same, bulk-loading into a k-NN index).

With ``--runtime-variants``, a is repeated with the forward pass in ONNX Runtime (a2: fp32, a3:
int8) and in torch bfloat16 (a4), so the runtimes compare on the same batches;
``--runtime``/``--quantize`` choose the runtime of a, c and d themselves.

a and b each run in a fresh process (neither inherits the other's imports or allocator state),
with as many threads as the machine has cores. c and d use the ingest
job's defaults (on a local CPU Ray: one single-threaded actor per core); their rate uses the
job's wall time, Ray start-up and actor model loading included.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import read_corpus
from retrosearch.core.config import Settings
from retrosearch.core.encoder import resolve_model_path
from retrosearch.core.retrieval.report import write_json

console = Console()

#: Run a again with each of these encoder settings: (runtime, quantize, dtype).
RUNTIME_VARIANTS = {
    "a2_raw_onnx": ("onnx", "none", "float32"),
    "a3_raw_onnx_int8": ("onnx", "int8", "float32"),
    "a4_raw_torch_bf16": ("torch", "none", "bfloat16"),
}


def raw_forward(docs: list, settings: Settings) -> dict[str, Any]:
    """(a) The encoder alone over ideally sorted batches."""
    from retrosearch.core.encoder import Encoder  # lazy: keeps torch, transformers out of CLI start-up

    encoder = Encoder.load(settings.encoder)
    token_ids = encoder.text_tokenizer.documents(docs)
    started = time.perf_counter()
    encoder.encode_token_ids(token_ids, desc="raw forward")
    seconds = time.perf_counter() - started
    # The encoder's own totals first: its "seconds" (inside the runtime, rounded) must not replace the
    # time the rate is computed from.
    return {**encoder.stats.as_dict(), "docs": len(docs), "seconds": seconds, "docs_per_s": len(docs) / seconds}


def sentence_transformers_loop(docs: list, settings: Settings) -> dict[str, Any]:
    """(b) A plain sentence-transformers encode loop."""
    # lazy: keeps torch, sentence_transformers out of CLI start-up
    from sentence_transformers import SentenceTransformer

    from retrosearch.core.encoder.device import resolve_device, set_threads

    set_threads(settings.encoder.threads)
    model = SentenceTransformer(str(resolve_model_path(settings.encoder.model)), device=str(resolve_device(settings.encoder.device)))
    texts = [f"{d.title} {d.text}".strip() for d in docs]
    started = time.perf_counter()
    model.encode(texts, show_progress_bar=settings.encoder.show_progress)
    seconds = time.perf_counter() - started
    return {"docs": len(docs), "seconds": seconds, "docs_per_s": len(docs) / seconds}


def in_fresh_process(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``measure(*args)`` in a new spawned process: no imports, threads or allocator state inherited."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, args)


def ray_ingest(corpus: Path, sink: str, settings: Settings, workdir: Path, workers: int | None,
               gpus_per_worker: float = 0.0) -> dict[str, Any]:
    """(c)/(d) The ingest job on a fresh state (its embedding actors on GPUs with ``gpus_per_worker``)."""
    from retrosearch.ingest.pipeline import IngestConfig, run_ingest  # lazy: keeps orjson out of CLI start-up

    if sink == "opensearch":
        settings = settings.model_copy(deep=True)
        settings.opensearch.index = f"bench-ingest-{os.getpid()}"
        settings.opensearch.replicas = 0
    config = IngestConfig(
        inputs=[corpus], sink=sink, out=workdir / sink, state_dir=workdir / f"state-{sink}", workers=workers,
        gpus_per_worker=gpus_per_worker, settings=settings,
    )
    started = time.perf_counter()
    try:
        summary = run_ingest(config)
        seconds = time.perf_counter() - started
    finally:
        if sink == "opensearch":
            # lazy: keeps opensearchpy out of CLI start-up
            from retrosearch.core.opensearch.client import connect

            connect(settings.opensearch).indices.delete(index=settings.opensearch.index, ignore_unavailable=True)
    docs = summary["rows_written"]
    return {"docs": docs, "seconds": seconds, "docs_per_s": docs / seconds, "summary": summary}


LABELS = {
    "a_raw": "a. raw forward, 1 process",
    "a2_raw_onnx": "a2. raw forward, ONNX Runtime",
    "a3_raw_onnx_int8": "a3. raw forward, ONNX Runtime int8",
    "b_sentence_transformers": "b. sentence-transformers encode",
    "c_ingest_faiss": "c. ingest -> FAISS (Ray)",
    "d_ingest_opensearch": "d. ingest -> OpenSearch (Ray)",
}


def plot_speed(payload: dict[str, Any], path: Path) -> None:
    """Horizontal bars of docs/s per run, the ratios in the title."""
    plt = pyplot()

    names = list(payload["results"])
    rates = [payload["results"][n]["docs_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.4))
    colors = {"a2_raw_onnx": "#777777", "a3_raw_onnx_int8": "#555555", "b_sentence_transformers": "#bbbbbb",
              "c_ingest_faiss": "#3b75af", "d_ingest_opensearch": "#519e3e"}
    bars = ax.barh([LABELS.get(n, n) for n in names], rates, color=[colors.get(n, "#999999") for n in names])
    ax.bar_label(bars, fmt="%.1f docs/s", fontsize=8, padding=3)
    ax.invert_yaxis()
    ax.set_xlim(0, max(rates) * 1.3)
    ax.set_xlabel("documents per second (higher is better)")
    ratios = "  ".join(f"{k} = {v:.2f}" for k, v in payload["ratios"].items())
    ax.set_title(f"{payload['model']}, {payload['docs']} docs, {payload['cpus']} CPUs\n{ratios}", fontsize=9)
    save(fig, path)


@opt.with_settings(opt.ENCODER, opt.OPENSEARCH_URL)
def ingest_speed(
    corpus: Annotated[Path, typer.Option(help="JSONL corpus (BEIR corpus.jsonl).")],
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N documents.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Embedding actors for the Ray runs.", show_default="the job's")] = None,
    runtime_variants: Annotated[
        bool, typer.Option(help="Also run a with ONNX Runtime, fp32 (a2) and int8 (a3), and torch bf16 (a4).")
    ] = False,
    skip_opensearch: Annotated[bool, typer.Option(help="Leave out run d.")] = False,
    gpus_per_worker: Annotated[
        float, typer.Option(help="GPUs per embedding actor of the Ray runs (0: CPU actors), as in `ingest`."),
        *opt.deprecated("--num-gpus-per-worker"),
    ] = 0.0,
    json_out: opt.JsonOut = None,
    settings: Settings = None,
) -> None:
    """Docs/s of the raw encoder, a sentence-transformers loop, and our ingest into FAISS and OpenSearch."""
    model = settings.encoder.model
    one_process = settings.model_copy(deep=True)
    one_process.encoder.threads = settings.encoder.threads or os.cpu_count()
    docs = list(read_corpus(corpus))[:limit]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "corpus.jsonl"
        subset.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs))
        results = {
            "a_raw": in_fresh_process(raw_forward, docs, one_process),
            "b_sentence_transformers": in_fresh_process(sentence_transformers_loop, docs, one_process),
        }
        if runtime_variants:
            for name, (runtime_, quantized, dtype) in RUNTIME_VARIANTS.items():
                variant = one_process.model_copy(deep=True)
                variant.encoder.runtime, variant.encoder.quantize, variant.encoder.dtype = runtime_, quantized, dtype
                results[name] = in_fresh_process(raw_forward, docs, variant)
        results["c_ingest_faiss"] = ray_ingest(subset, "faiss", settings, Path(tmp), workers, gpus_per_worker)
        if not skip_opensearch:
            results["d_ingest_opensearch"] = ray_ingest(subset, "opensearch", settings, Path(tmp), workers,
                                                        gpus_per_worker)
    rate = {k: v["docs_per_s"] for k, v in results.items()}
    ratios = {"c/a": rate["c_ingest_faiss"] / rate["a_raw"], "c/b": rate["c_ingest_faiss"] / rate["b_sentence_transformers"]}
    if "d_ingest_opensearch" in rate:
        ratios["d/a"] = rate["d_ingest_opensearch"] / rate["a_raw"]
    # The job's embedding alone (each actor's time inside the encoder) against a: what c loses to a
    # beyond this is start-up (Ray, the actors' imports and model loads) and the last blocks' tail.
    seconds = results["c_ingest_faiss"]["summary"]["seconds"]
    embed_s = seconds["embed_actors"] / results["c_ingest_faiss"]["summary"]["workers"]
    ratios["c embed/a"] = (results["c_ingest_faiss"]["docs"] / embed_s) / rate["a_raw"]
    results["c_ingest_faiss"]["outside_embedding_s"] = results["c_ingest_faiss"]["seconds"] - embed_s
    for name in RUNTIME_VARIANTS:
        if name in rate:
            short = name.split("_")[0]
            ratios[f"{short}/a"] = rate[name] / rate["a_raw"]
            ratios[f"{short}/b"] = rate[name] / rate["b_sentence_transformers"]
    table = Table(title=f"ingest speed: {model}, {len(docs)} docs from {corpus}", title_justify="left")
    for column in ("run", "docs", "seconds", "docs/s"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(name, str(r["docs"]), f"{r['seconds']:.1f}", f"{r['docs_per_s']:.2f}")
    console.print(table)
    console.print("  ".join(f"{k} = {v:.3f}" for k, v in ratios.items()))
    if json_out:
        payload = {
            "model": model, "docs": len(docs), "cpus": os.cpu_count(), "runtime": settings.encoder.runtime,
            "quantize": settings.encoder.quantize, "device": settings.encoder.device,
            "dtype": settings.encoder.dtype, "num_gpus_per_worker": gpus_per_worker,
            "results": results, "ratios": ratios,
        }
        write_json(json_out, payload)
        plot_speed(payload, json_out.with_suffix(".png"))
        console.print(f"wrote {json_out} and {json_out.with_suffix('.png')}")
