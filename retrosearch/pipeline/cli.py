"""``retrosearch pipeline run|plan PIPELINE.yaml``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from retrosearch.benchmarks.docs_block import DocsPage
from retrosearch.core import cli_options as opt

pipeline_app = typer.Typer(
    help="One YAML file from pretraining to a served index: pretrain, mine, fine-tune, evaluate, ingest, serve.",
    no_args_is_help=True,
)
console = opt.result_console()

PipelineFile = Annotated[Path, typer.Argument(help="Pipeline YAML (see examples/scifact.yaml).")]


def _load(path: Path):
    from retrosearch.pipeline.config import load_config  # lazy: keeps orjson, yaml out of CLI start-up

    with opt.user_errors():
        return load_config(path)


def _echo(line: str) -> None:
    # Plain lines, flushed at once: the trainers and the ingest job print their own progress between them.
    typer.echo(line)


@pipeline_app.command()
def plan(pipeline: PipelineFile) -> None:
    """Show, per stage, whether it would run, resume or be skipped, and why; runs nothing."""
    from retrosearch.pipeline.runner import plan as make_plan  # lazy: keeps orjson, yaml out of CLI start-up

    config = _load(pipeline)
    with opt.user_errors():
        decisions = make_plan(config)
    table = Table(title=f"pipeline {config.name} ({config.work_dir})", title_justify="left")
    for column in ("stage", "action", "why"):
        table.add_column(column)
    for decision in decisions:
        table.add_row(decision.stage.name, decision.action, decision.reason)
    console.print(table)


@pipeline_app.command()
def run(pipeline: PipelineFile) -> None:
    """Run every stage that is not done; an interrupted training resumes from its checkpoint."""
    # lazy: keeps orjson, yaml out of CLI start-up
    from retrosearch.pipeline.runner import format_figures
    from retrosearch.pipeline.runner import run as run_pipeline

    config = _load(pipeline)
    started = time.perf_counter()
    with opt.user_errors():
        records = run_pipeline(config, _echo)
    total = time.perf_counter() - started
    table = Table(title=f"pipeline {config.name}: {total:.1f}s", title_justify="left")
    for column in ("stage", "status", "seconds", "figures"):
        table.add_column(column)
    for record in records:
        seconds = "" if record.seconds is None else f"{record.seconds:.1f}"
        if record.status == "skipped" and record.seconds is not None:
            seconds = f"({seconds})"  # the earlier run's time
        figures = {k: v for k, v in record.figures.items()}
        table.add_row(record.name, record.status, seconds, format_figures(figures))
    console.print(table)
    serve = next((r for r in records if r.name == "serve" and r.outputs), None)
    if serve is not None:
        for name in ("serve", "connect"):
            if name in serve.outputs:
                typer.echo(f"{name}: {serve.outputs[name]}")


@pipeline_app.command()
@opt.accept_deprecated
def experiment(
    experiment_file: Annotated[Path, typer.Argument(help="Experiment YAML (see examples/pretraining.yaml).")],
    docs_page: DocsPage = None,
    list_runs: Annotated[bool, typer.Option("--list", help="Print the runs and run nothing.")] = False,
    report_only: Annotated[bool, typer.Option(
        "--report-only",
        help="Run nothing: the results and report of the runs finished so far (from the results file, "
        "else their manifests).",
    )] = False,
    only: Annotated[Optional[list[str]], typer.Option(
        "--only",
        help="Run only the runs whose label (collection/variant/seed-N, as --list prints it) matches this "
        "glob, e.g. '*/seed-2'; repeatable. The others are reported when finished and left otherwise.",
    )] = None,
) -> None:
    """Run pipelines as variants x seeds x collections, then write the table, plot and results JSON."""
    # lazy: keeps orjson, yaml out of CLI start-up
    from retrosearch.pipeline.experiment import (
        collect,
        expand,
        load_experiment,
        run_experiment,
        select,
        write_results,
    )
    from retrosearch.pipeline.experiment_report import write_report

    with opt.user_errors():
        config = load_experiment(experiment_file)
        runs = expand(config, str(experiment_file))
        selected = select(runs, only or [])
    if list_runs:
        for run in selected:
            typer.echo(f"{run.label}: {run.pipeline.work_dir}")
        return
    page = docs_page
    command = f"retrosearch pipeline experiment {experiment_file}" + (f" --docs-page {page}" if page else "")
    with opt.user_errors():
        if report_only:
            payload = collect(config, runs)
            if not payload["runs"]:
                raise opt.fail(f"{experiment_file}: no run has finished yet (run the experiment first)")
            write_results(config, payload)
        else:
            payload = run_experiment(config, runs, _echo, selected)
        summary = write_report(payload, config.out, command, page)
    table = Table(title=f"experiment {config.name}", title_justify="left")
    for column in ("collection", "variant", "seeds", "ndcg@10", "sd"):
        table.add_column(column)
    for row in payload["summary"]:
        sd = row["ndcg@10 sd"]
        table.add_row(row["collection"], row["label"], str(row["n"]), f"{row['ndcg@10']:.4f}",
                      "" if sd is None else f"{sd:.4f}")
    console.print(table)
    typer.echo(f"report: {summary}")


def register(app: typer.Typer) -> None:
    """Add ``retrosearch pipeline ...``."""
    app.add_typer(pipeline_app, name="pipeline")
