"""The experiment's report from its ``results.json``: a Markdown table, plots and the docs page's copy."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from retrosearch.benchmarks.docs_block import relative_folder, splice
from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core.retrieval.seeds import format_mean_sd
from retrosearch.pipeline.experiment import METRICS, SPREAD_COLUMNS, figure

PLOT = "ndcg.png"
#: Headers of the spread columns, shown when some run has them (a mean cosine near 1: collapsed vectors).
SPREAD = dict(zip(SPREAD_COLUMNS, ("query cos", "NDCG@10 before FT", "query cos before FT"), strict=True))
LOSS_PLOT = "pretraining-loss.png"


def block_markers(name: str) -> tuple[str, str]:
    """The lines around experiment ``name``'s copy in a docs page (``--docs-page`` rewrites what is between
    them), so one page can hold several experiments (docs/benchmarks/pretraining.md does)."""
    return (f"<!-- experiment {name}:start (written by retrosearch pipeline experiment --docs-page) -->",
            f"<!-- experiment {name}:end -->")


def _cell(row: dict[str, Any], metric: str) -> str:
    return format_mean_sd(row.get(metric), row.get(f"{metric} sd"))


def _cost(row: dict[str, Any], stage: str) -> str:
    cost = row.get(stage)
    if not cost:
        return "-"
    return f"{cost['steps']} steps x {cost['step_s']:.2f} s, {cost['tokens_per_s']:.0f} tok/s"


def _difference(row: dict[str, Any], metric: str) -> str:
    # Results written before every metric was paired hold NDCG@10's difference only.
    paired = row.get("paired") or {"ndcg@10": row.get("baseline")}
    diff = paired.get(metric) or {}
    return format_mean_sd(diff.get("mean"), diff.get("sd"), sign="+")


def _paired_metrics(payload: dict[str, Any]) -> list[str]:
    """The metrics paired with the baseline's: all of them, or NDCG@10 alone in older results."""
    if any("paired" in row for row in payload["summary"]):
        return list(METRICS)
    return ["ndcg@10"]


def _baseline_label(payload: dict[str, Any]) -> str | None:
    name = payload["experiment"].get("baseline")
    if name is None:
        return None
    return payload["experiment"]["variants"][name].get("label") or name


def table(payload: dict[str, Any]) -> list[str]:
    """The summary table: one row per collection and variant, mean ± sample sd over seeds, and the
    difference to the baseline paired by seed when the experiment names one."""
    baseline = _baseline_label(payload)
    paired = _paired_metrics(payload) if baseline else []
    spread = [c for c in SPREAD if any(c in row for row in payload["summary"])]
    extra = [f"{metric} vs {baseline}" for metric in paired] + [SPREAD[c] for c in spread]
    lines = [
        "| collection | variant | seeds | " + " | ".join([*METRICS, *extra]) + " | pretraining | fine-tuning |",
        "|---|---|---|" + "---|" * (len(METRICS) + len(extra)) + "---|---|",
    ]
    for row in payload["summary"]:
        cells = ([_cell(row, m) for m in METRICS] + [_difference(row, m) for m in paired]
                 + [format_mean_sd(row.get(c), None) for c in spread])
        lines.append(
            f"| {row['collection']} | {row['label']} | {row['n']} | " + " | ".join(cells)
            + f" | {_cost(row, 'pretrain')} | {_cost(row, 'finetune')} |"
        )
    return lines


def _settings(payload: dict[str, Any]) -> list[str]:
    lines = []
    for key, entry in payload["settings"].items():
        parts = [f"{stage} " + ", ".join(f"{k} {v}" for k, v in values.items() if v is not None)
                 for stage, values in entry.items()]
        lines.append(f"- {key}: " + ("; ".join(parts) if parts else "no training"))
    return lines


def _per_seed(payload: dict[str, Any]) -> list[str]:
    spread = [c for c in SPREAD if any(figure(run["figures"], c) is not None for run in payload["runs"])]
    columns = [*METRICS, *spread]
    lines = ["| collection | variant | seed | " + " | ".join([*METRICS, *(SPREAD[c] for c in spread)]) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for run in payload["runs"]:
        values = [figure(run["figures"], c) for c in columns]
        lines.append(f"| {run['collection']} | {run['variant']} | {run['seed'] if run['seed'] is not None else '-'} | "
                     + " | ".join("-" if v is None else f"{v:.4f}" for v in values) + " |")
    return lines


def plot(payload: dict[str, Any], path: Path) -> Path:
    """NDCG@10 per variant, a panel per collection: bars at the mean, sd as error bars, each seed a dot."""
    plt = pyplot()
    collections = list(dict.fromkeys(row["collection"] for row in payload["summary"]))
    most = max(sum(r["collection"] == c for r in payload["summary"]) for c in collections)
    fig, axes = plt.subplots(1, len(collections), figsize=(5.2 * len(collections), 1.2 + 0.45 * most),
                             squeeze=False)
    for ax, collection in zip(axes[0], collections):
        rows = [r for r in payload["summary"] if r["collection"] == collection]
        ys = list(range(len(rows)))[::-1]  # the first variant on top
        means = [r["ndcg@10"] or 0.0 for r in rows]
        ax.barh(ys, means, xerr=[r["ndcg@10 sd"] or 0.0 for r in rows], capsize=3, color="#4c78a8", alpha=0.8)
        right = []
        for y, row in zip(ys, rows):
            seeds = [run["figures"]["ndcg@10"] for run in payload["runs"]
                     if run["collection"] == collection and run["variant"] == row["variant"]
                     and run["figures"].get("ndcg@10") is not None]
            ax.scatter(seeds, [y] * len(seeds), color="black", s=12, zorder=3)
            # the label right of the bar's whiskers and dots, so it covers neither
            end = max([*seeds, (row["ndcg@10"] or 0.0) + (row["ndcg@10 sd"] or 0.0)])
            right.append(end)
            ax.annotate(f"{row['ndcg@10']:.4f} (n={row['n']})", (end, y), xytext=(5, 0),
                        textcoords="offset points", va="center", fontsize=8)
        base = next((r for r in rows if r["variant"] == payload["experiment"].get("baseline")), None)
        if base is not None and base["ndcg@10"] is not None:
            ax.axvline(base["ndcg@10"], color="#e45756", linestyle="--", linewidth=1)
        ax.set_xlim(max(0.0, min(means) - 0.08), min(1.0, max(right) + 0.07))
        ax.set_yticks(ys, [r["label"] for r in rows])
        ax.set_title(collection)
        ax.set_xlabel("NDCG@10 (test)")
    title = "Pretraining before fine-tuning: mean over seeds (n), each seed a dot"
    if payload["experiment"].get("baseline") is not None:
        title += f"; dashed: {_baseline_label(payload)}'s mean"
    # wrapped to the figure's width: one collection's panel is narrower than the title
    fig.suptitle(textwrap.fill(title, width=int(13 * fig.get_figwidth())), fontsize=10)
    save(fig, path)
    return path


def loss_curves(payload: dict[str, Any]) -> dict[tuple[str, int | None], list[dict[str, float]]]:
    """Each pretraining's loss curve by (label, seed), once: variants with the same pretraining
    settings share one pretraining (the same stage key), so they share a line, labelled with all
    their names; a pretraining shared by several collections is drawn once too."""
    variants = payload["experiment"]["variants"]
    pretrained = [run for run in payload["runs"] if (run.get("curves") or {}).get("pretrain")]
    pretraining = {name: json.dumps((v.get("stages") or {}).get("pretrain"), sort_keys=True)
                   for name, v in variants.items()}
    sharing: dict[str, list[str]] = {}
    for name in dict.fromkeys(run["variant"] for run in pretrained):  # the variants that pretrained, in order
        label = variants.get(name, {}).get("label") or name
        sharing.setdefault(pretraining.get(name, name), []).append(label)
    curves: dict[tuple[str, int | None], list[dict[str, float]]] = {}
    for run in pretrained:
        label = " / ".join(sharing[pretraining.get(run["variant"], run["variant"])])
        curves.setdefault((label, run["seed"]), run["curves"]["pretrain"])
    return curves


def loss_plot(payload: dict[str, Any], path: Path) -> Path | None:
    """Every pretraining's loss against the step, a colour per variant and a line per seed: the total
    each method minimises, and the encoder's MLM term where the methods have one (MLM, RetroMAE and
    DupMAE share it). None when no run has a curve."""
    curves = loss_curves(payload)
    if not curves:
        return None
    keys = ["loss", "loss/encoder_mlm"]
    titles = ["training loss (each method's total)", "encoder MLM loss (the shared term)"]
    if not any(all(p.get(keys[1]) is not None for p in curve) for curve in curves.values()):
        keys, titles = keys[:1], titles[:1]  # no method with that term (LLaRA): no empty panel
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    colours: dict[str, str] = {}
    for (label, _seed), curve in curves.items():
        first = label not in colours  # one legend entry per variant, however many seeds
        colour = colours.setdefault(label, f"C{len(colours)}")
        steps = [p["step"] for p in curve]
        for ax, key in zip(axes[0], keys):
            values = [p.get(key) for p in curve]
            if all(v is not None for v in values):
                ax.plot(steps, values, color=colour, linewidth=1, alpha=0.85, label=label if first else None)
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Pretraining loss per step, one line per seed", fontsize=10)
    save(fig, path)
    return path


def progress(payload: dict[str, Any]) -> list[str]:
    """A line saying how much of the experiment the figures cover, when it is not all of it."""
    done, planned = len(payload["runs"]), len(payload.get("planned") or payload["runs"])
    if done >= planned:
        return []
    return [(f"**Partial: {done} of {planned} runs finished.** The same command finishes the rest "
             "(finished stages are skipped, an interrupted training resumes)."), ""]


def _loss_image(payload: dict[str, Any], folder: str) -> list[str]:
    return [f"![Pretraining loss]({folder}{LOSS_PLOT})", ""] if loss_curves(payload) else []


def markdown(payload: dict[str, Any], command: str) -> str:
    """The report page: the table, the plots, the settings tried and every run's figures."""
    lines = [f"# Experiment {payload['experiment']['name']}", "", *progress(payload), *table(payload), "",
             f"![NDCG@10]({PLOT})", "", *_loss_image(payload, ""),
             "Mean ± sample standard deviation over the seeds. "
             + (f"The columns against {_baseline_label(payload)} are each seed's figure minus that arm's "
                "with the same seed, as mean ± sd (a variant trained once is compared with every seed). "
                if _baseline_label(payload) else "")
             + "Cost: the training steps, the mean wall time of one step and the tokens read per second "
             "(queries and passages, no padding), on the machine that ran it.", "",
             "## Settings", "", *_settings(payload), "", "## Every run", "", *_per_seed(payload), "",
             "Written by", "", "```bash", command, "```", ""]
    return "\n".join(lines)


def docs_block(payload: dict[str, Any], out: Path, page: Path, command: str) -> str:
    """The documentation page's copy: the table, the plots and the command."""
    folder = relative_folder(out, page)
    start, end = block_markers(payload["experiment"]["name"])
    return "\n".join([start, "", *progress(payload), *table(payload), "",
                      f"![NDCG@10 per variant]({folder}/{PLOT})", "", *_loss_image(payload, folder + "/"),
                      f"Every run and the settings: [summary.md]({folder}/summary.md). Written by",
                      "",
                      "```bash", command, "```", "", end])


def write_report(payload: dict[str, Any], out: Path, command: str, page: Path | None = None) -> Path:
    """``summary.md`` and the plot in ``out``; with ``page``, its experiment block rewritten."""
    plot(payload, out / PLOT)
    loss_plot(payload, out / LOSS_PLOT)
    summary = out / "summary.md"
    summary.write_text(markdown(payload, command))
    if page is not None:
        splice(page, docs_block(payload, out, page, command), *block_markers(payload["experiment"]["name"]))
    return summary
