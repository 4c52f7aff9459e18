"""``retrosearch ingest``: embed a collection with Ray and load it into OpenSearch, FAISS or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt
from retrosearch.core.config import Settings


@opt.with_settings(opt.ENCODER, opt.FAISS_BUILD, opt.OPENSEARCH, opt.OPENSEARCH_BUILD)
def ingest(
    input: Annotated[list[Path], typer.Option("--input", "-i", help="JSONL/Parquet file, folder of them, or a saved HF dataset; repeatable.")],
    sink: Annotated[str, typer.Option(help="opensearch, faiss or parquet.")] = "faiss",
    out: Annotated[Optional[Path], typer.Option(help="FAISS index folder or Parquet dataset folder.")] = None,
    faiss_backend: Annotated[str, typer.Option(help="faiss-flat, faiss-hnsw or faiss-ivfpq (FAISS sink).")] = "faiss-flat",
    id_field: Annotated[str, typer.Option(help="Field holding the document id.")] = "_id",
    title_field: Annotated[str, typer.Option(help="Field holding the title ('' for none).")] = "title",
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    keep_field: Annotated[list[str], typer.Option(help="Extra field to store with each document; repeatable.")] = [],
    on_error: Annotated[str, typer.Option(help="fail: stop at the first bad record; skip: write the good ones.")] = "fail",
    rejects: Annotated[Optional[Path], typer.Option(help="Where skipped records go (default INPUT.rejects.jsonl).")] = None,
    max_text_chars: Annotated[int, typer.Option(help="Records with longer title+text are bad input.")] = 100_000,
    chunk_rows: Annotated[int, typer.Option(help="Records per resumable chunk.")] = 1000,
    workers: Annotated[Optional[int], typer.Option(help="Embedding actors (default: one per GPU; on a local CPU Ray one per core).")] = None,
    num_gpus_per_worker: Annotated[float, typer.Option(help="GPUs per embedding actor (0: CPU).")] = 0.0,
    num_cpus_per_worker: Annotated[float, typer.Option(help="CPUs reserved per embedding actor.")] = 1.0,
    ray_batch_size: Annotated[Optional[int], typer.Option(help="Rows per block and actor call, length-sorted (default 128 on CPU, 1024 on GPU).")] = None,
    tokenize_stage: Annotated[Optional[bool], typer.Option("--tokenize-stage/--no-tokenize-stage", help="Tokenize in a separate CPU stage (default: with GPUs).")] = None,
    write_concurrency: Annotated[int, typer.Option(help="Parallel write tasks.")] = 2,
    ray_address: opt.RayAddress = None,
    state_dir: Annotated[Optional[Path], typer.Option(help="Where the resume manifest lives.")] = None,
    json_out: opt.JsonOut = None,
    settings: Settings = None,
) -> None:
    """Embed a collection on a Ray actor pool and bulk-load it; rerunning the same command resumes."""
    from retrosearch.ingest.pipeline import IngestConfig, run_ingest
    from retrosearch.core.collections.records import FieldMap

    with opt.user_errors():
        job = IngestConfig(
            inputs=input, sink=sink, out=out, faiss_backend=faiss_backend,
            fields=FieldMap(id=id_field, title=title_field or None, text=text_field, keep=tuple(keep_field)),
            on_error=on_error, rejects=rejects, max_text_chars=max_text_chars, chunk_rows=chunk_rows,
            batch_size=ray_batch_size, workers=workers, num_gpus_per_worker=num_gpus_per_worker,
            num_cpus_per_worker=num_cpus_per_worker, tokenize_stage=tokenize_stage,
            write_concurrency=write_concurrency, ray_address=ray_address, state_dir=state_dir, settings=settings,
        )
        summary = run_ingest(job)
    typer.echo(json.dumps(summary, indent=2))
    if summary["rejects"]:
        typer.secho(f"{summary['rejects']} records rejected; see {summary['rejects_file']}", fg=typer.colors.YELLOW, err=True)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2) + "\n")
    if summary["failed"] or summary["chunks_left"]:
        raise opt.fail(f"{len(summary['failed'])} documents failed to load; rerun the same command to retry them", 1)


def register(app: typer.Typer) -> None:
    """Add the ingest command."""
    app.command()(ingest)
