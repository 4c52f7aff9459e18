"""``retrosearch bench ...``: quality over collections and backends, speed, comparisons and reports."""

from __future__ import annotations

import typer

from retrosearch.benchmarks.ann import ann_command
from retrosearch.benchmarks.compare import compare_command
from retrosearch.benchmarks.ingest_speed import ingest_speed
from retrosearch.benchmarks.methods import methods_command
from retrosearch.benchmarks.opensearch_cluster import opensearch_cluster
from retrosearch.benchmarks.quality import quality
from retrosearch.benchmarks.report_markdown import report_command
from retrosearch.benchmarks.scale_point import scale_point_command
from retrosearch.benchmarks.serve_speed import serve_speed
from retrosearch.benchmarks.train_speed import train_speed
from retrosearch.benchmarks.vectors import vectors_command


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the ``retrosearch`` app."""
    bench = typer.Typer(help="Benchmarks: quality over collections and backends, speed.", no_args_is_help=True)
    bench.command()(quality)
    bench.command("ingest")(ingest_speed)
    bench.command("serve")(serve_speed)
    bench.command("train")(train_speed)
    bench.command("methods")(methods_command)
    bench.command("compare")(compare_command)
    bench.command("ann")(ann_command)
    bench.command("opensearch-cluster")(opensearch_cluster)
    bench.command("report")(report_command)
    bench.command("vectors")(vectors_command)
    bench.command("scale-point")(scale_point_command)
    app.add_typer(bench, name="bench")
