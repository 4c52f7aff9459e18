"""Retrieval methods side by side on one collection: BM25, dense exact and ANN, and hybrids.

Every method searches the same corpus vectors and the same query vectors (embedded once, or read
from the collection's cached exact index), so the rows differ only by the method:

* ``bm25``: OpenSearch's own BM25 (``multi_match`` over title and text) on the k-NN index;
* ``dense`` on FAISS flat (exact), FAISS HNSW, FAISS IVF-PQ and OpenSearch's Lucene HNSW;
* ``rrf``: reciprocal rank fusion of the bm25 and exact dense runs, done here;
* ``hybrid``: OpenSearch's ``hybrid`` query (bm25 + k-NN) through its normalization-processor,
  for each normalisation (min-max, l2) and dense weight of a small grid.

OpenSearch's faiss engine needs the k-NN plugin's native libraries, which the Maven Central build
lacks (its first flush kills the node, see tests/plugin/opensearch/test_server.py): it is listed
as not run rather than silently left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console

from retrosearch.benchmarks.ann import IVF_MIN_VECTORS
from retrosearch.benchmarks.fusion import reciprocal_rank_fusion
from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import Settings
from retrosearch.core.index import BACKENDS, FAISS_BACKENDS
from retrosearch.core.retrieval.metrics import MEASURES, evaluate_run
from retrosearch.core.retrieval.report import write_json

WEIGHTS = (0.3, 0.5, 0.7)
NORMALIZATIONS = ("min_max", "l2")
NOT_RUN = {
    "dense opensearch-faiss": "OpenSearch's faiss engine needs the k-NN native libraries, absent from the Maven "
                              "Central build used here (the node dies at its first flush)",
}


@dataclass
class MethodResult:
    """One method's figures on one collection, and what it took to search."""

    method: str
    family: str
    figures: dict[str, float]
    search_seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON row: figures at the top level."""
        return {"method": self.method, "family": self.family, **{k: round(v, 6) for k, v in self.figures.items()},
                "search_seconds": round(self.search_seconds, 3), "params": self.params}


def from_json(payload: dict[str, Any]) -> dict[str, list[MethodResult]]:
    """The rows of a ``methods.json`` back as results, per collection."""
    return {
        collection: [MethodResult(method=r["method"], family=r["family"], figures={m: r[m] for m in MEASURES},
                                  search_seconds=r["search_seconds"], params=r.get("params", {})) for r in rows]
        for collection, rows in payload["collections"].items()
    }


def _timed(call):
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def run_methods(
    root: Path,
    settings: Settings,
    split: str = "test",
    top_k: int = 100,
    weights: tuple[float, ...] = WEIGHTS,
    normalizations: tuple[str, ...] = NORMALIZATIONS,
    opensearch: bool = True,
) -> list[MethodResult]:
    """Every method of the module docstring on the collection at ``root``."""
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.index.opensearch_index import default_index_name
    from retrosearch.core.retrieval import cached_faiss_index, corpus_vectors, index_vectors, text_fields

    beir = BeirCollection(root)
    qrels = beir.qrels(split)
    queries = beir.judged_queries(split)
    query_ids, texts = [q.id for q in queries], [q.text for q in queries]
    cached_faiss_index(beir, settings)  # embeds the corpus once per encoder; later runs read it
    encoder = Encoder.load(settings.encoder)
    ids, vectors, _seconds, _ = corpus_vectors(beir, encoder)
    query_vectors = encoder.encode_queries(texts, desc="embedding queries")
    results: list[MethodResult] = []
    runs: dict[str, dict[str, dict[str, float]]] = {}

    def record(method: str, family: str, hits, seconds: float, **params: Any) -> None:
        run = hits.as_run(query_ids)
        runs[method] = run
        results.append(MethodResult(method, family, evaluate_run(qrels, run), seconds, params))

    os_index = None
    for backend in BACKENDS if opensearch else FAISS_BACKENDS:
        if backend == "faiss-ivfpq" and len(ids) < IVF_MIN_VECTORS:
            continue  # too few vectors to train its lists and 256 PQ centroids
        run_settings = settings.model_copy(deep=True)
        fields = None
        if backend == "opensearch":
            run_settings.opensearch.index = default_index_name(f"{beir.name}-methods", encoder.fingerprint)
            fields = text_fields(beir, ids)
        index, build = index_vectors(ids, vectors, encoder, backend, run_settings, fields)
        hits, seconds = _timed(lambda: index.search(query_vectors, top_k))
        record(f"dense {backend}", "dense", hits, seconds, build_seconds=round(build, 3), **index.meta.params)
        if backend == "opensearch":
            os_index = index
    if os_index is not None:
        hits, seconds = _timed(lambda: os_index.search_texts(texts, None, top_k, mode="bm25"))
        record("bm25", "lexical", hits, seconds, query="multi_match best_fields title,text tie_breaker 0.5")
        started = time.perf_counter()
        fused = reciprocal_rank_fusion([runs["bm25"], runs["dense faiss-flat"]], depth=top_k)
        rrf_seconds = time.perf_counter() - started
        results.append(MethodResult("rrf bm25+dense", "hybrid", evaluate_run(qrels, fused), rrf_seconds,
                                    {"k": 60, "runs": ["bm25", "dense faiss-flat"]}))
        for technique in normalizations:
            for weight in weights:
                hits, seconds = _timed(lambda: os_index.search_texts(
                    texts, query_vectors, top_k, mode="hybrid", dense_weight=weight, normalization=technique))
                record(f"hybrid {technique} w={weight:g}", "hybrid", hits, seconds,
                       normalization=technique, dense_weight=weight)
        os_index.delete()
    return results


def best(results: list[MethodResult], family: str, measure: str = "ndcg@10") -> MethodResult | None:
    """The family's best row by ``measure``."""
    rows = [r for r in results if r.family == family]
    return max(rows, key=lambda r: r.figures[measure]) if rows else None


def markdown_table(by_collection: dict[str, list[MethodResult]]) -> str:
    """One table: a row per collection and method, the four measures and the search time."""
    header = ["collection", "method", *MEASURES, "search s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for collection, results in by_collection.items():
        top = max(r.figures["ndcg@10"] for r in results)
        for r in results:
            cells = [f"**{r.figures[m]:.4f}**" if m == "ndcg@10" and r.figures[m] == top else f"{r.figures[m]:.4f}"
                     for m in MEASURES]
            lines.append("| " + " | ".join([collection, r.method, *cells, f"{r.search_seconds:.2f}"]) + " |")
    lines.append("")
    lines += [f"- not run: {name}: {why}" for name, why in NOT_RUN.items()]
    return "\n".join(lines) + "\n"


#: The main table's columns: heading and the method row it shows.
SUMMARY_COLUMNS = (("bm25", "bm25"), ("dense exact", "dense faiss-flat"), ("dense HNSW", "dense faiss-hnsw"),
                   ("RRF", "rrf bm25+dense"))


def summary_table(by_collection: dict[str, list[MethodResult]], measure: str = "ndcg@10") -> str:
    """The main table: a row per collection, one column per kind of method, the best hybrid with its setting.

    Bold marks the collection's best figure; a method that was not run shows as "-".
    """
    header = ["collection", *(name for name, _ in SUMMARY_COLUMNS), "best OpenSearch hybrid", "hybrid setting"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
    for collection, results in by_collection.items():
        by_method = {r.method: r for r in results}
        picked = [by_method.get(key) for _, key in SUMMARY_COLUMNS]
        hybrid = best(results, "hybrid")
        values = [r.figures[measure] if r else None for r in [*picked, hybrid]]
        top = max((v for v in values if v is not None), default=None)
        cells = ["-" if v is None else (f"**{v:.4f}**" if v == top else f"{v:.4f}") for v in values]
        lines.append("| " + " | ".join([collection, *cells, hybrid.method.removeprefix("hybrid ") if hybrid else "-"])
                     + " |")
    return "\n".join(lines) + "\n"


def verdicts(by_collection: dict[str, list[MethodResult]]) -> list[str]:
    """Whether the best hybrid beats both BM25 and the best dense method, per collection."""
    lines = []
    for collection, results in by_collection.items():
        lexical, dense, hybrid = (best(results, f) for f in ("lexical", "dense", "hybrid"))
        if not (lexical and dense and hybrid):
            continue
        beats = hybrid.figures["ndcg@10"] > max(lexical.figures["ndcg@10"], dense.figures["ndcg@10"])
        lines.append(
            f"{collection}: best hybrid ({hybrid.method}, {hybrid.figures['ndcg@10']:.4f}) "
            f"{'beats' if beats else 'does not beat'} bm25 ({lexical.figures['ndcg@10']:.4f}) and the best dense "
            f"({dense.method}, {dense.figures['ndcg@10']:.4f})"
        )
    return lines


def plot(by_collection: dict[str, list[MethodResult]], path: Path) -> None:
    """NDCG@10 per method (bars) per collection (groups)."""
    plt = pyplot()

    methods = list(dict.fromkeys(r.method for rows in by_collection.values() for r in rows))
    collections = list(by_collection)
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(8, 2.2 * len(collections)) + 2.5, 4.5))
    cmap = plt.get_cmap("tab20")
    for i, method in enumerate(methods):
        values = [next((r.figures["ndcg@10"] for r in by_collection[c] if r.method == method), np.nan)
                  for c in collections]
        ax.bar(np.arange(len(collections)) + (i - len(methods) / 2 + 0.5) * width, values, width,
               label=method, color=cmap(i % 20))
    ax.set_xticks(range(len(collections)), collections)
    ax.set_ylabel("NDCG@10")
    ax.set_ylim(0, 1)
    ax.set_title("retrieval methods: NDCG@10 per collection")
    # Outside the axes: inside, it covers the bars of the last collections.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    save(fig, path)


@opt.with_settings(opt.ENCODER, opt.OPENSEARCH_URL)
def methods_command(
    collection: Annotated[list[Path], typer.Option(help="BEIR folder; repeat for several.")],
    split: Annotated[str, typer.Option(help="qrels split.")] = "test",
    weight: Annotated[
        Optional[list[float]],
        typer.Option("--weight", help="Dense weights of the hybrid grid; repeatable.", show_default="0.3 0.5 0.7"),
    ] = None,
    skip_opensearch: Annotated[
        bool, typer.Option(help="FAISS rows only (no bm25, hybrid or OpenSearch k-NN).")
    ] = False,
    out: Annotated[Optional[Path], typer.Option(help="Folder for methods.json, methods.md and methods.png.")] = None,
    settings: Settings = None,
) -> None:
    """BM25, dense (exact and ANN) and hybrid (RRF, OpenSearch min-max / l2 over a weight grid), per collection."""
    console = Console()
    settings.opensearch.replicas = 0  # one node: a replica could never be assigned
    by_collection: dict[str, list[MethodResult]] = {}
    with opt.user_errors():
        for root in collection:
            rows = run_methods(root, settings, split, weights=tuple(weight or WEIGHTS), opensearch=not skip_opensearch)
            by_collection[BeirCollection(root).name] = rows
            console.print(markdown_table({BeirCollection(root).name: rows}))
    lines = verdicts(by_collection)
    for line in lines:
        console.print(line)
    if out:
        payload = {"model": settings.encoder.model, "split": split,
                   "collections": {c: [r.as_dict() for r in rows] for c, rows in by_collection.items()},
                   "verdicts": lines, "not_run": NOT_RUN}
        write_json(out / "methods.json", payload)
        (out / "methods.md").write_text(markdown_table(by_collection) + "\n" + "\n".join(f"- {v}" for v in lines) + "\n")
        plot(by_collection, out / "methods.png")
        console.print(f"wrote {out}/methods.json, methods.md, methods.png")
