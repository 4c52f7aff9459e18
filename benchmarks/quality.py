"""Quality benchmark: one model, several collections and backends, embedded once per collection.

Writes a JSON file with every figure, a Markdown table and a bar chart of NDCG@10 / Recall@100.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import Settings
from retrosearch.core.index import SEARCH_MODES
from retrosearch.core.retrieval.metrics import MEASURES
from retrosearch.core.retrieval.report import figures_table, write_json

if TYPE_CHECKING:
    from retrosearch.core.retrieval import EvalResult

console = Console()


def row_label(collection: str, backend: str, mode: str) -> str:
    """``collection/backend``, with ``:mode`` for OpenSearch's own query modes."""
    return f"{collection}/{backend}" + ("" if mode == "dense" else f":{mode}")


def run_quality(
    collections: list[Path],
    backends: list[str],
    settings: Settings,
    split: str = "test",
    top_k: int = 100,
    modes: tuple[str, ...] = ("dense",),
) -> dict[str, EvalResult]:
    """``{"collection/backend[:mode]": result}`` for every combination; each corpus is embedded
    once (or read from its cached exact index), each index built once and searched in every mode.

    Modes other than dense (bm25, hybrid, neural) run on the opensearch backend only.
    """
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.index.opensearch_index import default_index_name
    from retrosearch.core.retrieval import corpus_vectors, evaluate, index_vectors, text_fields

    unknown = [m for m in modes if m not in SEARCH_MODES]
    if unknown:
        raise ValueError(f"unknown search mode(s) {unknown}; choose from {', '.join(SEARCH_MODES)}")
    if any(m != "dense" for m in modes) and "opensearch" not in backends:
        raise ValueError(f"modes {[m for m in modes if m != 'dense']} need --backend opensearch")
    encoder = Encoder.load(settings.encoder)
    results: dict[str, EvalResult] = {}
    for root in collections:
        beir = BeirCollection(root)
        ids, vectors, seconds, reused = corpus_vectors(beir, encoder)
        if reused is not None:
            console.print(f"{beir.name}: corpus vectors read from {reused}")
        for backend in backends:
            run_settings = settings
            if backend == "opensearch" and not settings.opensearch.index:
                run_settings = settings.model_copy(deep=True)
                run_settings.opensearch.index = default_index_name(beir.name, encoder.fingerprint)
            # OpenSearch keeps title and text beside the vectors, as ingestion does (bm25 searches them).
            fields = text_fields(beir, ids) if backend == "opensearch" else None
            index, seconds["build_index"] = index_vectors(ids, vectors, encoder, backend, run_settings, fields)
            for mode in modes if backend == "opensearch" else ("dense",):
                result = evaluate(beir, encoder, backend, split, top_k, run_settings, index=index,
                                  build_seconds=seconds, mode=mode)
                label = row_label(beir.name, backend, mode)
                results[label] = result
                console.print(figures_table({label: result}))
    return results


def markdown_table(results: dict[str, EvalResult]) -> str:
    """The figures as a Markdown table."""
    header = ["collection / backend", *MEASURES, "queries", "docs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, r in results.items():
        cells = [label, *(f"{r.figures[m]:.4f}" for m in MEASURES), str(r.num_queries), str(r.num_docs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, EvalResult], path: Path, title: str) -> None:
    """Grouped bars of NDCG@10 and Recall@100 per collection/backend."""
    plt = pyplot()

    labels = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4))
    width = 0.38
    for offset, measure in ((-width / 2, "ndcg@10"), (width / 2, "recall@100")):
        values = [results[label].figures[measure] for label in labels]
        bars = ax.bar([i + offset for i in range(len(labels))], values, width, label=measure)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right")
    save(fig, path)


@opt.with_settings(opt.ENCODER, opt.OPENSEARCH_URL, opt.OPENSEARCH_BUILD, opt.HYBRID)
def quality(
    collection: Annotated[list[Path], typer.Option(help="BEIR folder; repeat for several.")],
    backend: Annotated[list[opt.BackendChoice], typer.Option("--backend", "-b", help="Index backend; repeat for several.")] = ["faiss-flat"],
    split: Annotated[str, typer.Option(help="qrels split.")] = "test",
    mode: Annotated[
        list[opt.SearchModeChoice],
        typer.Option("--mode", help="Search mode: dense, bm25 or hybrid; repeat for several. bm25 and hybrid are "
                     "OpenSearch's own queries on the opensearch backend's index, built from the same vectors."),
    ] = ["dense"],
    out: Annotated[Optional[Path], typer.Option(help="Folder for quality.json, quality.md and quality.png.")] = None,
    settings: Settings = None,
) -> None:
    """NDCG@10, MRR@10, Recall@100, MAP for one model over several collections, backends and modes."""
    model = settings.encoder.model
    with opt.user_errors():
        results = run_quality(collection, opt.chosen_names(backend), settings, split, modes=tuple(opt.chosen_names(mode)))
    console.print(figures_table(results, title=f"{model} on {split}"))
    if out:
        write_json(out / "quality.json", {label: r.as_dict() for label, r in results.items()})
        (out / "quality.md").write_text(markdown_table(results))
        plot(results, out / "quality.png", f"{model}: retrieval quality ({split})")
        console.print(f"wrote {out}/quality.json, quality.md, quality.png")
