"""Printing and saving evaluation results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from retrosearch.core.retrieval.metrics import MEASURES

if TYPE_CHECKING:
    from retrosearch.core.retrieval.evaluation import EvalResult


def figures_table(results: dict[str, EvalResult], title: str = "retrieval quality") -> Table:
    """One row per labelled result: the four measures, counts and total seconds."""
    table = Table(title=title, title_justify="left")
    table.add_column("run")
    for name in MEASURES:
        table.add_column(name, justify="right")
    for column in ("queries", "docs", "seconds"):
        table.add_column(column, justify="right")
    for label, result in results.items():
        table.add_row(
            label,
            *(f"{result.figures[name]:.4f}" for name in MEASURES),
            str(result.num_queries),
            str(result.num_docs),
            f"{result.seconds.get('total', 0.0):.1f}",
        )
    return table


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, creating the parent folder; ``-`` is stdout (``--json-out -``)."""
    text = json.dumps(payload, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def print_result(result: EvalResult, label: str, console: Console | None = None) -> None:
    """Print one result: the label, then a table of its figures."""
    console = console or Console()
    table = Table(title=label, title_justify="left")
    columns = {**{name: f"{result.figures[name]:.4f}" for name in MEASURES}, "queries": str(result.num_queries),
               "docs": str(result.num_docs), "seconds": f"{result.seconds.get('total', 0.0):.1f}"}
    for name in columns:
        table.add_column(name, justify="right")
    table.add_row(*columns.values())
    console.print(table)
