"""``retrosearch eval``: retrieval quality of a model + backend on a BEIR collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.plugin import cli_options as opt
from retrosearch.plugin.config import Settings


@opt.with_settings(opt.ENCODER, opt.ENCODER_SPEC, opt.FAISS_BUILD, opt.INDEX_SEARCH, opt.OPENSEARCH,
                   opt.OPENSEARCH_BUILD)
def eval_command(
    collection: Annotated[Path, typer.Option(help="BEIR collection folder.")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    backend: opt.Backend = "faiss-flat",
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="Search this saved FAISS index instead of building one.")] = None,
    top_k: Annotated[int, typer.Option(help="Hits retrieved per query (Recall@100 needs >= 100).")] = 100,
    json_out: opt.JsonOut = None,
    quiet: opt.Quiet = False,
    settings: Settings = None,
) -> None:
    """NDCG@10, MRR@10, Recall@100 and MAP of MODEL on a collection, through a search backend.

    With --backend opensearch, an existing --index-name is searched as it is; otherwise it is built.
    """
    from retrosearch.benchmarks.evaluate import evaluate
    from retrosearch.benchmarks.report import print_result, write_json
    from retrosearch.plugin.collections import BeirCollection
    from retrosearch.plugin.encoder import Encoder
    from retrosearch.plugin.index import load_index

    if quiet:
        settings.encoder.show_progress = False
    model = settings.encoder.model
    with opt.user_errors():
        beir = BeirCollection(collection)
        beir.qrels(split)
        encoder = Encoder.load(settings.encoder)
        index = None
        if index_dir:
            index = load_index(index_dir, settings)
        elif backend == "opensearch" and settings.opensearch.index and _opensearch_index_exists(settings):
            index = load_index(None, settings, backend="opensearch")
        result = evaluate(beir, encoder, backend, split=split, top_k=top_k, settings=settings, index=index)
    print_result(result, f"{beir.name}/{split} {model} {result.config['backend']}")
    if json_out:
        write_json(json_out, result.as_dict())
        typer.echo(f"wrote {json_out}")


def _opensearch_index_exists(settings) -> bool:
    from retrosearch.plugin.opensearch.client import connect

    return bool(connect(settings.opensearch).indices.exists(index=settings.opensearch.index))


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the ``retrosearch`` app."""
    from retrosearch.benchmarks.ann import ann_command
    from retrosearch.benchmarks.compare import compare_command
    from retrosearch.benchmarks.ingest_speed import ingest_speed
    from retrosearch.benchmarks.methods import methods_command
    from retrosearch.benchmarks.report_markdown import report_command
    from retrosearch.benchmarks.quality import quality
    from retrosearch.benchmarks.serve_speed import serve_speed
    from retrosearch.benchmarks.train_speed import train_speed

    app.command("eval")(eval_command)
    bench = typer.Typer(help="Benchmarks: quality over collections and backends, speed.", no_args_is_help=True)
    bench.command()(quality)
    bench.command("ingest")(ingest_speed)
    bench.command("serve")(serve_speed)
    bench.command("train")(train_speed)
    bench.command("methods")(methods_command)
    bench.command("compare")(compare_command)
    bench.command("ann")(ann_command)
    bench.command("report")(report_command)
    app.add_typer(bench, name="bench")
