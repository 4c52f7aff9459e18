"""``retrosearch ingest``: embed a collection with Ray and load it into OpenSearch, FAISS or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt
from retrosearch.core.collections import FieldMap
from retrosearch.core.config import Settings
from retrosearch.core.index import FaissBackendName
from retrosearch.core.retrieval.report import write_json
from retrosearch.ingest.choices import OnError, SinkName


@opt.with_settings(opt.ENCODER, opt.FAISS_BUILD, opt.OPENSEARCH, opt.OPENSEARCH_BUILD)
def ingest(
    corpus: Annotated[
        list[Path],
        typer.Option("--corpus", help="JSONL/Parquet file, folder of them, or a saved HF dataset; repeatable."),
        *opt.deprecated("--input", "-i"),
    ],
    sink: Annotated[SinkName, typer.Option(help="Where the vectors go.")] = "faiss",
    out: Annotated[Optional[Path], typer.Option(help="FAISS index folder or Parquet dataset folder.")] = None,
    faiss_backend: Annotated[FaissBackendName, typer.Option(help="FAISS index kind (FAISS sink).")] = (
        "faiss-flat"),
    id_field: Annotated[str, typer.Option(help="Field holding the document id.")] = "_id",
    title_field: Annotated[str, typer.Option(help="Field holding the title ('' for none).")] = "title",
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    keep_field: Annotated[list[str], typer.Option(help="Extra field to store with each document; repeatable.")] = [],
    on_error: Annotated[OnError, typer.Option(
        help="fail: stop at the first bad record; skip: write the good ones.")] = "fail",
    rejects: Annotated[Optional[Path], typer.Option(
        help="Where skipped records go.", show_default="CORPUS.rejects.jsonl")] = None,
    max_text_chars: Annotated[int, typer.Option(help="Records with longer title+text are bad input.")] = 100_000,
    chunk_rows: Annotated[int, typer.Option(help="Records per resumable chunk.")] = 1000,
    workers: Annotated[Optional[int], typer.Option(
        help="Embedding actors.", show_default="one per GPU; on a local CPU Ray one per core")] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per embedding actor (0: CPU)."),
                               *opt.deprecated("--num-gpus-per-worker")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs reserved per embedding actor."),
                               *opt.deprecated("--num-cpus-per-worker")] = 1.0,
    block_rows: Annotated[Optional[int], typer.Option(
        help="Rows per Ray Data block and actor call, length-sorted.", show_default="128 on CPU, 1024 on GPU"),
        *opt.deprecated("--ray-batch-size")] = None,
    tokenize_stage: Annotated[Optional[bool], typer.Option(
        "--tokenize-stage/--no-tokenize-stage", help="Tokenize in a separate CPU stage.", show_default="with GPUs",
    )] = None,
    write_concurrency: Annotated[int, typer.Option(help="Parallel write tasks.")] = 2,
    ray_address: opt.RayAddress = None,
    state_dir: Annotated[Optional[Path], typer.Option(help="Where the resume manifest lives.")] = None,
    json_out: opt.JsonOut = None,
    settings: Settings = None,
) -> None:
    """Embed a collection on a Ray actor pool and bulk-load it; rerunning the same command resumes."""
    from retrosearch.ingest.pipeline import IngestConfig, run_ingest  # lazy: keeps orjson out of CLI start-up

    with opt.user_errors():
        job = IngestConfig(
            inputs=corpus, sink=sink, out=out, faiss_backend=faiss_backend,
            fields=FieldMap(id=id_field, title=title_field or None, text=text_field, keep=tuple(keep_field)),
            on_error=on_error, rejects=rejects, max_text_chars=max_text_chars, chunk_rows=chunk_rows,
            block_rows=block_rows, workers=workers, gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker, tokenize_stage=tokenize_stage,
            write_concurrency=write_concurrency, ray_address=ray_address, state_dir=state_dir, settings=settings,
        )
        summary = run_ingest(job)
    typer.echo(json.dumps(summary, indent=2))
    if summary["rejects"]:
        typer.secho(f"{summary['rejects']} records rejected; see {summary['rejects_file']}", fg=typer.colors.YELLOW, err=True)
    if json_out and not opt.to_stdout(json_out):  # the summary is on stdout already
        write_json(json_out, summary)
    if summary["failed"] or summary["chunks_left"]:
        raise opt.fail(f"{len(summary['failed'])} documents failed to load; rerun the same command to retry them", 1)


def register(app: typer.Typer) -> None:
    """Add the ingest command."""
    app.command()(ingest)
