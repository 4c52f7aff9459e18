"""The ingest job: plan, resume, read, embed on an actor pool, write through a sink, summarise."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from retrosearch.core.collections import FieldMap
from retrosearch.core.config import Settings, cache_dir
from retrosearch.core.index import FaissBackendName
from retrosearch.core.ray_runtime import ensure_ray
from retrosearch.ingest.choices import OnError, SinkName
from retrosearch.ingest.embed import EmbedBatch, TokenizeBatch
from retrosearch.ingest.plan import plan_ingest
from retrosearch.ingest.state import atomic_write_text


class IngestConfig(BaseModel):
    """Everything one ingest run needs; the CLI builds it from its options."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Path]
    sink: SinkName = "faiss"
    out: Path | None = Field(
        None, description="FAISS index folder or Parquet dataset folder (its resume state in OUT/_ingest/)"
    )
    faiss_backend: FaissBackendName = Field("faiss-flat", description="FAISS index kind (FAISS sink)")
    fields: FieldMap = Field(default_factory=FieldMap)
    on_error: OnError = Field("fail", description="fail: stop at the first bad record; skip: write the good ones")
    rejects: Path | None = None
    max_text_chars: int = Field(100_000, gt=0, description="records with longer title+text are bad input")
    chunk_rows: int = Field(1000, gt=0, description="records per resumable chunk")
    block_rows: int | None = Field(
        None, gt=0, description="rows per Ray Data block and actor call, length-sorted [default: 128 on CPU, "
        "1024 on GPU]"
    )
    workers: int | None = Field(
        None, gt=0, description="embedding actors [default: one per GPU; on a local CPU Ray one per core]"
    )
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per embedding actor (0: CPU)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per embedding actor")
    tokenize_stage: bool | None = Field(None, description="separate tokenization stage [default: on with GPUs]")
    write_concurrency: int = Field(2, gt=0, description="parallel write tasks")
    ray_address: str | None = None
    state_dir: Path | None = None
    settings: Settings = Field(default_factory=Settings)


PARQUET_STATE = "_ingest"
OLD_PARQUET_LAYOUT = ("plan.json", "parts", "fragments")


def _state_root(config: IngestConfig, key: str) -> Path:
    if config.state_dir:
        return config.state_dir / key
    if config.sink == "parquet":
        return config.out / PARQUET_STATE / key  # "_": Parquet readers skip it
    if config.sink == "faiss":
        return config.out / ".ingest" / key
    return cache_dir() / "ingest" / f"opensearch-{config.settings.opensearch.index}" / key


def _check_parquet_out(out: Path) -> None:
    """Refuse a Parquet folder written by an earlier version (state and a ``parts/`` folder in OUT)."""
    if any((out / name).exists() for name in OLD_PARQUET_LAYOUT):
        raise ValueError(
            f"{out} holds a Parquet ingest in the old layout (plan.json, parts/, fragments/; its vectors are in "
            f"{out / 'parts'}); delete it or choose another --out, and rerun to write a readable Parquet dataset"
        )


def _drop_other_states(root: Path) -> None:
    """Forget earlier ingests of other input or another encoder into the same Parquet folder; the
    sweep in ``IngestState.pending`` then deletes their part files, so the folder holds one dataset."""
    if root.parent.is_dir():
        for other in root.parent.iterdir():
            if other.is_dir() and other.name != root.name:
                shutil.rmtree(other)


def _make_sink(config: IngestConfig, root: Path, meta: Any):
    from retrosearch.ingest import sinks  # lazy: keeps ray, pyarrow out of importing this module

    if config.sink == "opensearch":
        if not config.settings.opensearch.index:
            raise ValueError("--sink opensearch needs --index-name")
        sink = sinks.OpenSearchSink(root, config.settings, meta)
        sink.prepare()
        return sink
    if config.out is None:
        raise ValueError(f"--sink {config.sink} needs --out")
    if config.sink == "parquet":
        return sinks.ParquetSink(root, config.out)
    return sinks.FaissSink(root, config.out, config.faiss_backend, config.settings, meta)


def _write_rejects(path: Path, rejects: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"file": r.path, "line": r.line, "reason": r.reason}) for r in rejects]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def run_ingest(config: IngestConfig) -> dict[str, Any]:
    """Run (or resume) an ingest and return its summary.

    Raises :class:`~retrosearch.core.collections.CollectionError` on the first bad record when
    ``on_error="fail"``, before anything is written.
    """
    # lazy: keeps torch, transformers out of importing this module
    from retrosearch.core.encoder import describe

    if config.sink != "opensearch" and config.out is None:
        raise ValueError(f"--sink {config.sink} needs --out")
    if config.sink == "parquet":
        _check_parquet_out(config.out)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    plan = plan_ingest(config.inputs, config.fields, config.on_error, config.max_text_chars, config.chunk_rows)
    seconds["plan"] = time.perf_counter() - started
    if plan.rejects:
        rejects_path = config.rejects or Path(f"{config.inputs[0]}.rejects.jsonl")
        _write_rejects(rejects_path, plan.rejects)
    meta = describe(config.settings.encoder)
    key = hashlib.sha256(f"{plan.fingerprint}|{meta.model_fingerprint}|{config.faiss_backend}".encode()).hexdigest()[:16]
    root = _state_root(config, key)
    if config.sink == "parquet" and not config.state_dir:
        _drop_other_states(root)
    atomic_write_text(root / "plan.json", plan.to_json())
    sink = _make_sink(config, root, meta)
    state = sink.state()
    pending, already = state.pending(plan)

    embed_stats: dict[str, Any] = sink.totals
    layout: dict[str, Any] = {}
    started = time.perf_counter()
    if pending:
        with sink.loading():
            embed_stats, layout = _run_pipeline(config, pending, sink)
    seconds["pipeline"] = time.perf_counter() - started
    # Summed over actors and write tasks (they overlap each other and the pipeline's wall time).
    seconds["embed_actors"] = embed_stats["embed_seconds"]
    seconds["write_tasks"] = embed_stats["seconds"]

    started = time.perf_counter()
    final = sink.finalize()
    seconds["finalize"] = time.perf_counter() - started
    remaining = state.incomplete(plan)
    total = seconds["plan"] + seconds["pipeline"] + seconds["finalize"]
    rows = embed_stats["rows"]
    padded = embed_stats["padded"]
    return {
        "rows_in": plan.total_records,
        "rows_valid": plan.good_rows,
        "rows_written": rows,
        "rows_already_done": already,
        "rejects": len(plan.rejects),
        "rejects_file": str(config.rejects or f"{config.inputs[0]}.rejects.jsonl") if plan.rejects else None,
        "failed": [{"id": i, "reason": r} for i, r in embed_stats["failed"][:100]],
        "chunks_left": len(remaining),
        "sink": config.sink,
        **{f"sink_{k}": v for k, v in final.items()},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "rows_per_s": round(rows / seconds["pipeline"], 2) if rows and seconds["pipeline"] else 0.0,
        "tokens_per_s": round(embed_stats["tokens"] / seconds["pipeline"], 1) if rows and seconds["pipeline"] else 0.0,
        "padding_ratio": round(1 - embed_stats["tokens"] / padded, 4) if padded else 0.0,
        "total_seconds": round(total, 3),
        **layout,
        "state": str(root),
        "model": meta.model_name,
        "model_fingerprint": meta.model_fingerprint,
    }


def resolve_workers(config: IngestConfig, resources: dict[str, float]) -> int:
    """How many embedding actors a run starts when ``--workers`` is not given.

    With GPUs: as many as the cluster's GPUs hold. On a local CPU Ray: one single-threaded actor per
    core (up to 16, beyond that actors get several threads each), since a small encoder's intra-op
    threads scale worse than separate processes as cores are added (on 2 CPUs the two layouts
    embed equally fast; 2 x 1 was 3% faster end to end on 1,600 SciFact passages). On a CPU
    cluster: as many as its CPUs hold, minus one CPU for reads and writes.
    """
    if config.workers:
        return config.workers
    if config.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // config.gpus_per_worker))
    cpus = resources.get("CPU", 1)
    if not config.ray_address:
        return max(1, min(16, int(cpus // config.cpus_per_worker)))
    return max(1, int((cpus - 1) // config.cpus_per_worker))


def _run_pipeline(config: IngestConfig, chunks: list, sink: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the Ray Data job over ``chunks``; returns the write statistics and how the job was laid out."""
    # lazy: keeps ray, pyarrow out of importing this module
    import ray
    from ray.data import ActorPoolStrategy

    from retrosearch.ingest.progress import LiveProgress
    from retrosearch.ingest.source import ChunkSource

    ensure_ray(config.ray_address)
    # Our own bar counts rows written; Ray's per-operator bars and log lines would only add noise.
    ray.data.DataContext.get_current().enable_progress_bars = False
    local = not config.ray_address
    gpu = config.gpus_per_worker > 0
    workers = resolve_workers(config, ray.cluster_resources())
    batch_size = config.block_rows or (1024 if gpu else 128)
    encoder_settings = config.settings.encoder.model_dump()
    if gpu and config.settings.encoder.device == "auto":
        encoder_settings["device"] = "cuda"
    if encoder_settings["threads"] is None and not gpu and local:
        encoder_settings["threads"] = max(1, (os.cpu_count() or 1) // workers)
    # Reading and writing barely use a CPU; they must not wait for a slot the actors hold. On a
    # cluster too: when a node is lost, Ray restarts its actors on the nodes left, where they can
    # take every CPU, and reads and writes that each wanted one waited forever (seen with 2 actors
    # on two 2-CPU nodes, one lost). Without a CPU to reserve nothing bounds how many start at
    # once, so the concurrency caps do: every read task at once would mean a Python process each.
    # Ray Data spreads them over the nodes (its default scheduling strategy is SPREAD).
    io_args: dict[str, Any] = {"num_cpus": 0}
    source = ChunkSource(chunks, config.fields, batch_size)
    ds = ray.data.read_datasource(
        source, override_num_blocks=len(source.slices()), ray_remote_args=io_args, concurrency=max(2, workers)
    )
    # Two calls in flight keep an actor fed without queueing the tail of the job on a busy one.
    pool = {"size": workers, "max_tasks_in_flight_per_actor": 2}
    tokenize = config.tokenize_stage if config.tokenize_stage is not None else gpu
    if tokenize:
        ds = ds.map_batches(
            TokenizeBatch, fn_constructor_kwargs={"settings": encoder_settings}, batch_size=batch_size,
            compute=ActorPoolStrategy(**pool), num_cpus=1, batch_format="numpy",
        )
    ds = ds.map_batches(
        EmbedBatch,
        fn_constructor_kwargs={"settings": encoder_settings},
        batch_size=batch_size,
        compute=ActorPoolStrategy(**pool),
        num_gpus=config.gpus_per_worker,
        num_cpus=config.cpus_per_worker,
        batch_format="numpy",
    )
    with LiveProgress(sum(c.rows for c in chunks), desc=f"ingest -> {config.sink}") as counter:
        sink.progress = counter
        ds.write_datasink(sink, concurrency=config.write_concurrency, ray_remote_args=io_args)
    sink.progress = None
    layout = {"workers": workers, "threads_per_worker": encoder_settings["threads"], "block_rows": batch_size,
              "tokenize_stage": tokenize}
    return sink.totals, layout
