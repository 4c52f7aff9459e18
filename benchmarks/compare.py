"""``retrosearch bench compare OLD.json NEW.json``: the change of every figure, drops flagged.

Any of our result files works (quality, methods, ingest, serve, ann): both are flattened to
``path -> number``; rows of a list are keyed by their ``method``/``label``/``name`` when they have
one, so reordered rows still line up. A figure's direction comes from its name:

* quality (``ndcg@10``, ``mrr@10``, ``recall@...``, ``map``): higher is better; a drop of more
  than ``quality_threshold`` (absolute) is flagged;
* rates (``..._per_s``, ``qps``): higher is better; latencies (``p50``, ``p95``, ``p99``,
  ``..._ms``): lower is better; a change for the worse of more than ``speed_threshold``
  (relative) is flagged;
* everything else (counts, settings, timings of set-up steps) is shown when it changed, never flagged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from retrosearch.core import cli_options as opt

_QUALITY = re.compile(r"^(ndcg|mrr|recall|map|p|precision)(@\d+)?$")
_RATE = re.compile(r"(_per_s|^qps|queries_per_s)$")
_LATENCY = re.compile(r"^(p50|p90|p95|p99)(_ms)?$|_ms$|latency")
_ROW_KEYS = ("method", "label", "name", "run")


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON value by slash-separated path."""
    out: dict[str, float] = {}
    if isinstance(value, bool):
        return out
    if isinstance(value, (int, float)):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            label = next((str(item[k]) for k in _ROW_KEYS if isinstance(item, dict) and k in item), str(i))
            out.update(flatten(item, f"{prefix}/{label}" if prefix else label))
    return out


def kind_of(path: str) -> str:
    """``quality``, ``rate``, ``latency`` or ``other``, from the figure's own name."""
    name = path.rsplit("/", 1)[-1].lower()
    if _QUALITY.match(name):
        return "quality"
    if _RATE.search(name):
        return "rate"
    if _LATENCY.search(name):
        return "latency"
    return "other"


@dataclass
class Change:
    """One figure in both files."""

    path: str
    old: float
    new: float
    kind: str
    worse: bool

    @property
    def delta(self) -> float:
        """New minus old."""
        return self.new - self.old

    @property
    def relative(self) -> float | None:
        """The change as a fraction of the old value (None when it was 0)."""
        return self.delta / self.old if self.old else None


def compare(old: Any, new: Any, quality_threshold: float = 0.01, speed_threshold: float = 0.10) -> list[Change]:
    """Every figure present in both, with ``worse`` set for drops beyond the thresholds."""
    before, after = flatten(old), flatten(new)
    changes = []
    for path in before.keys() & after.keys():
        a, b = before[path], after[path]
        kind = kind_of(path)
        if kind == "quality":
            worse = a - b > quality_threshold
        elif kind == "rate":
            worse = a > 0 and (a - b) / a > speed_threshold
        elif kind == "latency":
            worse = a > 0 and (b - a) / a > speed_threshold
        else:
            worse = False
        changes.append(Change(path, a, b, kind, worse))
    return sorted(changes, key=lambda c: c.path)


def compare_command(
    old: Annotated[Path, typer.Argument(help="The earlier result JSON.")],
    new: Annotated[Path, typer.Argument(help="The later result JSON.")],
    quality_threshold: Annotated[float, typer.Option(help="Flag quality drops larger than this (absolute).")] = 0.01,
    speed_threshold: Annotated[float, typer.Option(help="Flag speed losses larger than this fraction.")] = 0.10,
    show_all: Annotated[bool, typer.Option("--all", help="Also list figures that did not change.")] = False,
) -> None:
    """Print the change of each figure between two result files; exit 1 when one got worse."""
    try:
        payloads = [json.loads(path.read_text()) for path in (old, new)]
    except (OSError, ValueError) as exc:
        raise opt.fail(f"cannot read a result file: {exc}") from None
    changes = compare(*payloads, quality_threshold=quality_threshold, speed_threshold=speed_threshold)
    if not changes:
        raise opt.fail(f"{old} and {new} share no figure; are they results of the same benchmark?")
    table = Table(title=f"{old} -> {new}", title_justify="left")
    for column in ("figure", "old", "new", "change", ""):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for c in changes:
        if not show_all and c.delta == 0:
            continue
        relative = f" ({c.relative:+.1%})" if c.relative is not None else ""
        table.add_row(c.path, f"{c.old:.4g}", f"{c.new:.4g}", f"{c.delta:+.4g}{relative}",
                      "[red]WORSE[/red]" if c.worse else "")
    console = Console()
    console.print(table)
    worse = [c for c in changes if c.worse]
    console.print(f"{len(changes)} figures compared, {sum(c.delta != 0 for c in changes)} changed, {len(worse)} worse")
    if worse:
        raise typer.Exit(1)
