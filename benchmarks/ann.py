"""``retrosearch bench ann``: recall@10 against exact search versus speed, for each ANN setting.

Points are measured on a collection's real embeddings and on a synthetic scale point built from
them (each synthetic vector mixes two random real ones and adds Gaussian noise, then is
normalised: the real space's directions, at a size none of the shared collections has). Queries
are the collection's real query vectors, topped up with noisy copies to ``num_queries``.

For every point: recall@10 (the fraction of exact search's top 10 found), queries/s with all
queries in one batch call (the backend's own threads), p50 latency of one query at a time, build
time, index size and bytes per vector in memory and on disk (OpenSearch: its store on disk).
FAISS HNSW sweeps M x efConstruction x efSearch and IVF-PQ sweeps nprobe; the quantized indices
(int8 and binary, flat and HNSW) sweep oversample, with their codes' own ranking (no rescoring)
as one more point each. OpenSearch's Lucene HNSW (float vectors, and quantized: Lucene's
scalar quantizer, byte and binary fields, by oversample) sweeps efSearch on the real point
(bulk-loading a million vectors into one local node is out of this machine's reach in a
benchmark's time).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console

from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.retrieval.report import write_json

K = 10
EF_SEARCH = (16, 32, 64, 128, 256, 512)
# At a million vectors the same recall needs a wider search.
SCALE_EF_SEARCH = (*EF_SEARCH, 1024)
OVERSAMPLE = (1, 2, 4, 10)
QUANTIZED = ("int8", "int8-hnsw", "binary", "binary-hnsw")
NPROBE = (1, 4, 16, 64, 256)
IVF_MIN_VECTORS = 1000


@dataclass
class AnnPoint:
    """One backend setting at one scale."""

    scale: str
    n: int
    backend: str
    params: dict[str, Any]
    recall_at_10: float
    queries_per_s: float
    p50_ms: float
    build_seconds: float
    index_bytes: int
    # Per vector: what a search holds in memory, and what the folder takes (with a rescoring store).
    memory_bytes_per_vector: float = 0.0
    disk_bytes_per_vector: float = 0.0

    def label(self) -> str:
        """``backend k=v ...`` for tables and legends."""
        return " ".join([self.backend, *(f"{k}={v}" for k, v in self.params.items())])


@dataclass
class AnnSweep:
    """All points of one run, with what they were measured on."""

    collection: str
    model: str
    num_queries: int
    points: list[AnnPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was done to the data, for the report

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, each point with its label."""
        return {"collection": self.collection, "model": self.model, "num_queries": self.num_queries, "k": K,
                "cpus": os.cpu_count(), "notes": self.notes,
                "points": [{"label": p.label(), **asdict(p)} for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnnSweep":
        """A sweep back from its ``as_dict`` JSON."""
        fields = AnnPoint.__dataclass_fields__
        points = [AnnPoint(**{k: v for k, v in p.items() if k in fields}) for p in data["points"]]
        return cls(data["collection"], data["model"], data["num_queries"], points, list(data.get("notes", [])))


# ---------------------------------------------------------------------------------------------- data


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(vectors: np.ndarray, n: int, noise: float = 0.1, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors, each a random mix of two real ones plus Gaussian noise (std ``noise``
    per unit length, spread over the dimensions)."""
    rng = np.random.default_rng(seed)
    d = vectors.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        a, b = rng.integers(len(vectors), size=(2, m))
        mix = rng.random((m, 1), dtype=np.float32)
        rows = mix * vectors[a] + (1 - mix) * vectors[b]
        rows += rng.standard_normal((m, d), dtype=np.float32) * (noise / np.sqrt(d))
        out[start : start + m] = _unit(rows)
    return out


def query_set(real: np.ndarray, n: int, noise: float = 0.1, seed: int = 1) -> np.ndarray:
    """The real query vectors, then noisy copies of them up to ``n`` (fewer real ones than ``n``)."""
    if len(real) >= n:
        return np.ascontiguousarray(real[:n], dtype=np.float32)
    rng = np.random.default_rng(seed)
    rows = real[rng.integers(len(real), size=n - len(real))]
    extra = rows + rng.standard_normal(rows.shape, dtype=np.float32) * (noise / np.sqrt(real.shape[1]))
    return np.vstack([real, _unit(extra)]).astype(np.float32)


def without_queries(points: np.ndarray, queries: np.ndarray, same: float = 1 - 1e-5) -> tuple[np.ndarray, int]:
    """``points`` less the rows that are one of ``queries`` (cosine >= ``same``), and how many went.

    A scale point built from real embeddings holds the collections' query vectors too; a query
    left in the swept index would find itself first and flatter every recall.
    """
    import faiss  # lazy: keeps faiss out of CLI start-up

    index = faiss.IndexFlatIP(points.shape[1])
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    scores, positions = index.search(np.ascontiguousarray(queries, dtype=np.float32), 4)
    drop = np.unique(positions[(scores >= same) & (positions >= 0)])
    del index
    return (np.delete(points, drop, axis=0) if len(drop) else points), int(len(drop))


def hnsw_graphs(specs: list[str]) -> list[tuple[int, int]]:
    """``M:efConstruction`` strings as (M, efConstruction) pairs; a one-line error naming one that is not."""
    graphs = []
    for spec in specs:
        m, _, ef_construction = spec.partition(":")
        if not (m.isdigit() and ef_construction.isdigit() and int(m) > 1 and int(ef_construction) > 0):
            raise opt.fail(f"--scale-hnsw {spec!r}: expected M:efConstruction, such as 32:100")
        graphs.append((int(m), int(ef_construction)))
    return graphs


def recall(found: np.ndarray, truth: np.ndarray, k: int = K) -> float:
    """Mean over queries of |found top-k ∩ true top-k| / k (positions; -1 never matches)."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1}) for f, t in zip(found, truth)]
    return float(np.mean(hits)) / k


def speed(search: Any, queries: np.ndarray, single: int = 200) -> tuple[float, float, np.ndarray]:
    """(queries/s of one batch call, p50 ms of single-query calls, the batch's positions)."""
    search(queries[:8])  # warm caches and thread pools
    started = time.perf_counter()
    positions = search(queries)
    qps = len(queries) / (time.perf_counter() - started)
    times = []
    for row in queries[:single]:
        began = time.perf_counter()
        search(row[None, :])
        times.append(time.perf_counter() - began)
    return qps, float(np.median(times) * 1000), positions


# ---------------------------------------------------------------------------------------------- sweeps


def _faiss(kind: str, vectors: np.ndarray, meta: Any, **params: Any):
    from retrosearch.core.index.faiss_index import FaissIndex  # lazy: keeps faiss out of CLI start-up

    index = FaissIndex(meta.model_copy(deep=True), kind, FaissSettings(**params, use_gpu="never"))
    started = time.perf_counter()
    index.add([str(i) for i in range(len(vectors))], vectors)
    return index, time.perf_counter() - started


def _sizes(index: Any) -> dict[str, Any]:
    """An index's size fields of an :class:`AnnPoint`."""
    footprint = index.footprint()
    return {"index_bytes": footprint.memory_bytes,
            "memory_bytes_per_vector": footprint.per_vector(footprint.memory_bytes),
            "disk_bytes_per_vector": footprint.per_vector(footprint.disk_bytes)}


def faiss_points(
    scale: str, vectors: np.ndarray, queries: np.ndarray, meta: Any, hnsw_grid: list[tuple[int, int]],
    ef_search: tuple[int, ...] = EF_SEARCH, nprobe: tuple[int, ...] = NPROBE, progress: Any = print,
) -> tuple[list[AnnPoint], np.ndarray]:
    """Exact, HNSW (each (M, efConstruction) x efSearch) and IVF-PQ (nprobe) points; the truth."""
    n = len(vectors)
    flat, built = _faiss("flat", vectors, meta)
    qps, p50, truth = speed(lambda q: flat.search_positions(q, K)[1], queries)
    points = [AnnPoint(scale, n, "faiss-flat", {}, 1.0, qps, p50, built, **_sizes(flat))]
    progress(f"{scale}: exact {qps:.0f} q/s")
    for m, ef_construction in hnsw_grid:
        hnsw, built = _faiss("hnsw", vectors, meta, hnsw_m=m, hnsw_ef_construction=ef_construction)
        size = _sizes(hnsw)
        for ef in ef_search:
            qps, p50, found = speed(lambda q, ef=ef: hnsw.search_positions(q, K, ef_search=ef)[1], queries)
            points.append(AnnPoint(scale, n, "faiss-hnsw", {"M": m, "efC": ef_construction, "ef": ef},
                                   recall(found, truth), qps, p50, built, **size))
        progress(f"{scale}: hnsw M={m} efC={ef_construction} built in {built:.0f}s")
    if n < IVF_MIN_VECTORS:  # too few to train the coarse lists and 256 PQ centroids
        return points, truth
    ivf, built = _faiss("ivfpq", vectors, meta)
    size = _sizes(ivf)
    for probes in nprobe:
        qps, p50, found = speed(lambda q, p=probes: ivf.search_positions(q, K, nprobe=p)[1], queries)
        points.append(AnnPoint(scale, n, "faiss-ivfpq", {"nlist": ivf.meta.params["nlist"], "nprobe": probes},
                               recall(found, truth), qps, p50, built, **size))
    progress(f"{scale}: ivfpq built in {built:.0f}s")
    return points, truth


def quantized_points(
    scale: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, meta: Any,
    kinds: tuple[str, ...] = QUANTIZED, oversample: tuple[float, ...] = OVERSAMPLE, m: int = 32,
    ef_construction: int = 200, ef_search: int = 256, progress: Any = print,
) -> list[AnnPoint]:
    """Each quantized kind without rescoring and at each ``oversample`` (HNSW kinds: M, efConstruction,
    efSearch as given; efSearch is raised to k x oversample where that is larger)."""
    points = []
    n = len(vectors)
    for kind in kinds:
        hnsw = kind.endswith("hnsw")
        graph = {"M": m, "efC": ef_construction, "ef": ef_search} if hnsw else {}
        params = {"hnsw_m": m, "hnsw_ef_construction": ef_construction, "hnsw_ef_search": ef_search}
        index, built = _faiss(kind, vectors, meta, **(params if hnsw else {}))
        size = _sizes(index)
        for factor in (None, *oversample):
            def search(q: np.ndarray, f: float | None = factor) -> np.ndarray:
                return index.search_positions(q, K, rescore=f is not None, oversample=f)[1]

            qps, p50, found = speed(search, queries)
            setting = {**graph, "rescore": "no"} if factor is None else {**graph, "oversample": factor}
            points.append(AnnPoint(scale, n, f"faiss-{kind}", setting, recall(found, truth), qps, p50, built,
                                   **size))
        progress(f"{scale}: {kind} built in {built:.0f}s")
    return points


def opensearch_points(
    scale: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, meta: Any, settings: Settings,
    ef_search: tuple[int, ...] = EF_SEARCH, knn_encoder: str = "none",
    oversample: tuple[float, ...] = (),
) -> list[AnnPoint]:
    """Lucene HNSW in OpenSearch (M and efConstruction of the settings) for each efSearch; with a
    quantized ``knn_encoder`` (``sq``: Lucene's scalar quantizer; ``int8``, ``binary``: byte and
    binary fields) each efSearch without rescoring, then each ``oversample`` rescored at the
    settings' efSearch."""
    # lazy: keeps torch, faiss, opensearchpy out of CLI start-up
    from retrosearch.core.index.opensearch_index import OpenSearchIndex
    from retrosearch.core.retrieval import fill_index

    name = f"retrosearch-ann-{meta.model_fingerprint[:12]}"
    run = settings.opensearch.model_copy(update={"index": name, "replicas": 0, "force_merge": True,
                                                 "knn_encoder": knn_encoder})
    backend = "opensearch-lucene" + ("" if knn_encoder == "none" else f"-{knn_encoder}")
    graph = {"M": run.hnsw_m, "efC": run.hnsw_ef_construction}
    grid = [({**graph, "ef": ef}, {"hnsw_ef_search": ef, "rescore": False}) for ef in ef_search]
    if knn_encoder != "none":
        grid += [({**graph, "ef": run.hnsw_ef_search, "oversample": o}, {"rescore": True, "oversample": o})
                 for o in oversample]
    started = time.perf_counter()
    index = OpenSearchIndex.create(meta, run, recreate=True)
    fill_index(index, [str(i) for i in range(len(vectors))], vectors)
    built = time.perf_counter() - started
    stats = index.client.indices.stats(index=index.name, metric="store")
    size = int(stats["indices"][index.name]["total"]["store"]["size_in_bytes"])
    points = []
    try:
        for params, search_settings in grid:
            view = OpenSearchIndex(index.client, index.name, index.meta,
                                   run.model_copy(update=search_settings))
            qps, p50, ids = speed(lambda q, v=view: np.asarray(
                [[int(i) for i in row] + [-1] * (K - len(row)) for row in v.search(q, K).ids]), queries)
            points.append(AnnPoint(scale, len(vectors), backend, params, recall(ids, truth), qps, p50, built,
                                   size, disk_bytes_per_vector=size / len(vectors)))
    finally:
        index.delete()
    return points


def best_at_recall(points: list[AnnPoint], backend: str, target: float = 0.98) -> AnnPoint | None:
    """The fastest point of ``backend`` whose recall@10 reaches ``target``."""
    good = [p for p in points if p.backend == backend and p.recall_at_10 >= target]
    return max(good, key=lambda p: p.queries_per_s) if good else None


def _per_vector(point: AnnPoint) -> str:
    return f" ({point.memory_bytes_per_vector:,.0f} B/vector)" if point.memory_bytes_per_vector else ""


def summary(sweep: AnnSweep, target: float = 0.98) -> list[str]:
    """Per scale: the exact baseline and each backend's fastest point at the target recall."""
    lines = []
    for scale in dict.fromkeys(p.scale for p in sweep.points):
        points = [p for p in sweep.points if p.scale == scale]
        exact = next(p for p in points if p.backend == "faiss-flat")
        lines.append(f"{scale} ({exact.n:,} vectors): exact {exact.queries_per_s:.0f} q/s, p50 {exact.p50_ms:.2f} ms")
        for backend in dict.fromkeys(p.backend for p in points if p.backend != "faiss-flat"):
            hit = best_at_recall(points, backend, target)
            if hit is None:
                top = max((p for p in points if p.backend == backend), key=lambda p: p.recall_at_10)
                lines.append(f"  {backend}: recall@10 never reaches {target} (best {top.recall_at_10:.3f} at "
                             f"{top.label()}, {top.queries_per_s:.0f} q/s)")
            else:
                lines.append(f"  {backend}: recall@10 {hit.recall_at_10:.3f} at {hit.label()}: "
                             f"{hit.queries_per_s:.0f} q/s = {hit.queries_per_s / exact.queries_per_s:.2g}x exact, "
                             f"p50 {hit.p50_ms:.2f} ms, built in {hit.build_seconds:.0f}s, "
                             f"{hit.index_bytes / 2**20:.0f} MiB{_per_vector(hit)}")
    return lines


def markdown(sweep: AnnSweep) -> str:
    """Every point as a table row."""
    lines = ["| scale | n | setting | recall@10 | queries/s | p50 ms | build s | MiB | B/vector memory "
             "| B/vector disk |", "|" + "---|" * 10]
    for p in sweep.points:
        lines.append(f"| {p.scale} | {p.n:,} | {p.label()} | {p.recall_at_10:.3f} | {p.queries_per_s:.0f} | "
                     f"{p.p50_ms:.2f} | {p.build_seconds:.0f} | {p.index_bytes / 2**20:.0f} | "
                     f"{p.memory_bytes_per_vector:,.0f} | {p.disk_bytes_per_vector:,.0f} |")
    return "\n".join(lines) + "\n"


def plot(sweep: AnnSweep, path: Path) -> None:
    """Recall@10 against queries/s (log), one panel per scale, a line per backend setting family."""
    plt = pyplot()
    scales = list(dict.fromkeys(p.scale for p in sweep.points))
    fig, axes = plt.subplots(1, len(scales), figsize=(6 * len(scales), 4.2), squeeze=False)
    for ax, scale in zip(axes[0], scales):
        points = [p for p in sweep.points if p.scale == scale]
        families: dict[str, list[AnnPoint]] = {}
        for p in points:
            family = p.backend + "".join(f" {k}={v}" for k, v in p.params.items() if k in ("M", "efC"))
            family += " no rescoring" if p.params.get("rescore") == "no" else ""
            families.setdefault(family, []).append(p)
        colours = plt.get_cmap("tab20").colors  # a sweep has more families than the default ten colours
        for number, (family, rows) in enumerate(families.items()):
            rows = sorted(rows, key=lambda p: p.recall_at_10)
            style = "*" if family == "faiss-flat" else "o-"
            ax.plot([p.recall_at_10 for p in rows], [p.queries_per_s for p in rows], style, label=family,
                    markersize=5, color=colours[number % len(colours)])
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 (of exact top 10)")
        ax.set_ylabel("queries/s (one batch)")
        ax.set_title(f"{sweep.collection} {scale}: {points[0].n:,} vectors")
        ax.axvline(0.98, color="#cccccc", linestyle="--", linewidth=1)
        ax.legend(fontsize=7)
    save(fig, path)


# ---------------------------------------------------------------------------------------------- command


@opt.with_settings(opt.ENCODER, opt.OPENSEARCH_URL)
def ann_command(
    collection: Annotated[Path, typer.Option(help="BEIR folder whose real embeddings are swept.")],
    scale: Annotated[int, typer.Option(help="Vectors of the synthetic scale point; 0 for none.")] = 1_000_000,
    scale_vectors: Annotated[Optional[Path], typer.Option(
        help="A scale point from `bench scale-point` (vectors.npy), swept instead of the synthetic one."),
    ] = None,
    scale_hnsw: Annotated[list[str], typer.Option(
        "--scale-hnsw", help="HNSW graphs built at the scale point, M:efConstruction (repeatable)."),
    ] = ["32:100"],
    num_queries: Annotated[int, typer.Option(help="Queries per measurement (real ones, then noisy copies).")] = 1000,
    skip_opensearch: Annotated[bool, typer.Option(help="FAISS only.")] = False,
    quantized: Annotated[bool, typer.Option(help="Also sweep the quantized FAISS indices.")] = True,
    oversample: Annotated[
        list[float], typer.Option("--oversample", help="Oversample of the quantized indices (repeatable).")
    ] = list(OVERSAMPLE),
    out: Annotated[Optional[Path], typer.Option(help="Folder for ann.json, ann.md and ann.png.")] = None,
    settings: Settings = None,
) -> None:
    """Recall@10 vs queries/s and p50 latency of HNSW (efSearch, M, efConstruction), IVF-PQ (nprobe) and
    the quantized indices (oversample) in FAISS and of OpenSearch's HNSW, on real embeddings and a
    synthetic scale point, with bytes per vector in memory and on disk."""
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.retrieval import cached_faiss_index, corpus_vectors

    console = Console()
    with opt.user_errors():
        graphs = hnsw_graphs(scale_hnsw)  # before the hours of sweeping, not after
        beir = BeirCollection(collection)
        cached_faiss_index(beir, settings)
        encoder = Encoder.load(settings.encoder)
        _ids, vectors, _s, _ = corpus_vectors(beir, encoder)
        real_queries = encoder.encode_queries([q.text for q in beir.queries.values()], desc="embedding queries")
        queries = query_set(real_queries, num_queries)
        meta = encoder.index_meta()
        sweep = AnnSweep(collection=beir.name, model=settings.encoder.model, num_queries=len(queries))
        grid = [(16, 100), (32, 100), (32, 200), (48, 200)]
        points, truth = faiss_points("real", vectors, queries, meta, grid, progress=console.print)
        sweep.points += points
        if quantized:
            sweep.points += quantized_points("real", vectors, queries, truth, meta,
                                             oversample=tuple(oversample), progress=console.print)
        if not skip_opensearch:
            sweep.points += opensearch_points("real", vectors, queries, truth, meta, settings)
            for encoding in ("sq", "int8", "binary") if quantized else ():
                sweep.points += opensearch_points("real", vectors, queries, truth, meta, settings,
                                                  knn_encoder=encoding, oversample=tuple(oversample))
        if scale or scale_vectors:
            name, big = "synthetic", None
            if scale_vectors is not None:
                name, big = "scale-point", np.ascontiguousarray(np.load(scale_vectors, mmap_mode="r"))
                if big.shape[1] != meta.dim:
                    raise ValueError(f"{scale_vectors}: {big.shape[1]}-dimensional vectors, the "
                                     f"encoder's are {meta.dim}-dimensional")
                big, dropped = without_queries(big, real_queries)
                sweep.notes.append(f"{dropped:,} of the scale point's vectors were {beir.name}'s queries' own "
                                   "(the swept queries come from them) and were left out of it")
                console.print(sweep.notes[-1])
            else:
                big = synthetic(vectors, scale)
            points, big_truth = faiss_points(name, big, queries, meta, graphs,
                                             ef_search=SCALE_EF_SEARCH, progress=console.print)
            sweep.points += points
            if quantized:
                sweep.points += quantized_points(name, big, queries, big_truth, meta,
                                                 oversample=tuple(oversample), progress=console.print)
    console.print(markdown(sweep))
    lines = [*sweep.notes, *summary(sweep)]
    for line in lines:
        console.print(line)
    if out:
        write_json(out / "ann.json", {**sweep.as_dict(), "summary": lines})
        (out / "ann.md").write_text(markdown(sweep) + "\n" + "\n".join(f"- {line}" for line in lines) + "\n")
        plot(sweep, out / "ann.png")
        console.print(f"wrote {out}/ann.json, ann.md, ann.png")
