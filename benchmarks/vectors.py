"""``retrosearch bench vectors``: retrieval quality against memory per vector and speed.

For each collection, every row searches the same corpus and query vectors (embedded once, or read
from the collection's cached exact index) and is scored with the collection's judgments
(NDCG@10, Recall@100), with the bytes per vector it holds in memory, what its rescoring store
costs beside that (on disk, memory-mapped) and queries/s of one batch call:

* ``float32``: exact search (``faiss-flat``), the reference of every target;
* ``int8`` and ``binary`` (``faiss-int8``, ``faiss-binary``): the codes' own ranking
  (``rescore=no``) and each ``oversample`` rescored;
* ``ivfpq`` (``faiss-ivfpq``), where the corpus is large enough to train it;
* with ``--finetune-steps``: fine-tunes of the model on one training split (the same data, steps
  and seed for both), one with a Matryoshka loss over ``--matryoshka-dims`` and one without,
  for each ``--seed``; every collection is searched with each fine-tune's vectors cut to each of
  those dimensions (exact search). The rows without the Matryoshka loss are plain truncation.

Targets, checked in the table: int8 with rescoring within 0.002 NDCG@10 of float32, binary with
rescoring within 0.01. The figures go to ``vectors.json`` cell by cell: a rerun skips the
finished cells (and the finished fine-tunes), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console

from retrosearch.benchmarks.ann import IVF_MIN_VECTORS, OVERSAMPLE
from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.retrieval.seeds import format_mean_sd, mean_sd, paired_differences

#: NDCG@10 a rescored row may lose against float32 and still meet its target.
TARGETS = {"int8": 0.002, "binary": 0.01}
MATRYOSHKA_DIMS = (384, 256, 128, 64)
SEEDS = (1, 2, 3)
#: The encoder of the quantization rows (the ``--model`` as given).
BASE = "base"
FAMILY_ORDER = ("float32", "int8", "binary", "ivfpq", "matryoshka", "truncation")


@dataclass(frozen=True)
class Setting:
    """One row of a collection: an index kind searched one way, by one encoder, at one dimension."""

    family: str
    encoder: str = BASE
    dim: int | None = None  # None: the encoder's own
    oversample: float | None = None  # None: no rescoring (quantized kinds) or not quantized
    seed: int | None = None

    @property
    def backend(self) -> str:
        return {"float32": "faiss-flat", "int8": "faiss-int8", "binary": "faiss-binary",
                "ivfpq": "faiss-ivfpq"}.get(self.family, "faiss-flat")

    @property
    def rescored(self) -> bool:
        return self.oversample is not None

    def label(self) -> str:
        """``family [dim=D] [oversample=O | rescore=no] [seed=S]`` (the cell's name in tables)."""
        parts = [self.family]
        if self.dim is not None:
            parts.append(f"dim={self.dim}")
        if self.family in TARGETS:
            parts.append(f"oversample={self.oversample:g}" if self.rescored else "rescore=no")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return " ".join(parts)


@dataclass
class Cell:
    """The figures of one setting on one collection."""

    collection: str
    setting: Setting
    ndcg_at_10: float
    recall_at_100: float
    queries_per_s: float
    memory_bytes_per_vector: float
    rescore_bytes_per_vector: float
    num_queries: int
    num_docs: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return cell_key(self.collection, self.setting)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.setting.label(), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["setting"] = Setting(**data["setting"])
        return cls(**values)


def cell_key(collection: str, setting: Setting) -> str:
    """The cell's key in ``vectors.json``: collection and setting label."""
    return f"{collection} | {setting.label()}"


def quantization_settings(oversample: Iterable[float] = OVERSAMPLE, ivfpq: bool = True) -> list[Setting]:
    """float32, each quantized kind without rescoring and at each oversample, then IVF-PQ."""
    rows = [Setting("float32")]
    for family in TARGETS:
        rows += [Setting(family), *(Setting(family, oversample=float(o)) for o in oversample)]
    return rows + ([Setting("ivfpq")] if ivfpq else [])


def finetune_name(matryoshka: bool, seed: int) -> str:
    """The folder (under ``OUT/models``) and encoder name of one fine-tune."""
    return f"{'matryoshka' if matryoshka else 'plain'}-seed{seed}"


def dimension_settings(seeds: Iterable[int], dims: Iterable[int]) -> list[Setting]:
    """Per seed and dimension: the Matryoshka fine-tune's cut vectors and the plain fine-tune's."""
    rows = []
    for seed in seeds:
        for matryoshka, family in ((True, "matryoshka"), (False, "truncation")):
            rows += [Setting(family, finetune_name(matryoshka, seed), dim=d, seed=seed) for d in dims]
    return rows


# ---------------------------------------------------------------------------------------------- store


class CellStore:
    """``vectors.json``: every finished cell by key, written after each new one (atomically), so a
    rerun skips what is done. ``about`` holds what the figures were measured with."""

    def __init__(self, path: Path, about: dict[str, Any] | None = None) -> None:
        self.path = path
        self.cells: dict[str, Cell] = {}
        self.about: dict[str, Any] = dict(about or {})
        if path.exists():
            data = json.loads(path.read_text())
            self.cells = {key: Cell.from_dict(cell) for key, cell in data.get("cells", {}).items()}
            self.about = {**data.get("about", {}), **self.about}

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def add(self, cell: Cell) -> None:
        self.cells[cell.key] = cell
        self.write()

    def write(self, extra: dict[str, Any] | None = None) -> None:
        payload = {"about": self.about, **(extra or {}),
                   "cells": {key: cell.as_dict() for key, cell in self.cells.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(partial, self.path)  # a killed run never leaves a half-written file

    def by_collection(self) -> dict[str, list[Cell]]:
        grouped: dict[str, list[Cell]] = {}
        for cell in self.cells.values():
            grouped.setdefault(cell.collection, []).append(cell)
        return grouped


# ---------------------------------------------------------------------------------------------- figures


def reference(cells: list[Cell]) -> Cell | None:
    """The collection's float32 exact-search cell of the base encoder."""
    return next((c for c in cells if c.setting.family == "float32" and c.setting.encoder == BASE), None)


def target_verdict(cell: Cell, float32: Cell | None) -> str:
    """For a rescored int8 / binary cell: whether it is within its target of float32's NDCG@10."""
    tolerance = TARGETS.get(cell.setting.family)
    if tolerance is None or not cell.setting.rescored or float32 is None:
        return ""
    loss = float32.ndcg_at_10 - cell.ndcg_at_10
    return f"{'met' if loss <= tolerance else 'missed'} (loss {loss:+.4f}, target {tolerance})"


def paired_difference(cells: list[Cell], baseline: list[Cell]) -> str:
    """NDCG@10 of ``cells`` minus ``baseline``'s, seed by seed (``+mean ± sd`` of the differences,
    "-" without a common seed): the two fine-tunes of a seed share their data order, so the spread
    of the differences, not of each arm, says whether the gap is real."""
    differences = paired_differences([(c.setting.seed, c.ndcg_at_10) for c in cells],
                                     [(c.setting.seed, c.ndcg_at_10) for c in baseline])
    return format_mean_sd(*mean_sd(differences), sign="+") if differences else "-"


def best_saving(cells: list[Cell], tolerance: float = 0.01) -> Cell | None:
    """The cell with the fewest bytes per vector in memory whose NDCG@10 is within ``tolerance`` of
    float32's (the headline: the best memory saving at about the same quality)."""
    float32 = reference(cells)
    if float32 is None:
        return None
    good = [c for c in cells if c.ndcg_at_10 >= float32.ndcg_at_10 - tolerance and c.setting.seed is None]
    return min(good, key=lambda c: (c.memory_bytes_per_vector, -c.ndcg_at_10)) if good else None


def summary(by_collection: dict[str, list[Cell]]) -> list[str]:
    """Per collection: the best memory saving within 0.01 NDCG@10, and each target's verdict."""
    lines = []
    for collection, cells in by_collection.items():
        float32 = reference(cells)
        if float32 is None:
            continue
        hit = best_saving(cells)
        if hit is not None:
            ratio = float32.memory_bytes_per_vector / hit.memory_bytes_per_vector
            lines.append(f"{collection}: {hit.setting.label()} keeps NDCG@10 {hit.ndcg_at_10:.4f} against "
                         f"float32's {float32.ndcg_at_10:.4f} at {hit.memory_bytes_per_vector:,.0f} B/vector "
                         f"in memory ({ratio:.0f}x less; rescoring store "
                         f"{hit.rescore_bytes_per_vector:,.0f} B/vector)")
        for family, tolerance in TARGETS.items():
            rescored = sorted((c for c in cells if c.setting.family == family and c.setting.rescored),
                              key=lambda c: c.setting.oversample)
            met = [c for c in rescored if float32.ndcg_at_10 - c.ndcg_at_10 <= tolerance]
            verdict = (f"met from oversample {met[0].setting.oversample:g}" if met
                       else "missed at every oversample")
            if rescored:
                lines.append(f"{collection}: {family} with rescoring within {tolerance} NDCG@10 of float32: "
                             f"{verdict}")
    return lines


def _row(cell: Cell, float32: Cell | None) -> str:
    delta = f"{cell.ndcg_at_10 - float32.ndcg_at_10:+.4f}" if float32 else "-"
    return (f"| {cell.setting.label()} | {cell.memory_bytes_per_vector:,.0f} "
            f"| {cell.rescore_bytes_per_vector:,.0f} | {cell.ndcg_at_10:.4f} | {cell.recall_at_100:.4f} "
            f"| {delta} | {cell.queries_per_s:,.0f} "
            f"| {target_verdict(cell, float32)} |")


def markdown(by_collection: dict[str, list[Cell]]) -> str:
    """Per collection: every quantization cell, then the dimension cells as mean ± std over seeds."""
    lines = []
    for collection, cells in by_collection.items():
        float32 = reference(cells)
        lines += [f"### {collection}", "",
                  "| setting | B/vector in memory | rescoring store B/vector | NDCG@10 | Recall@100 "
                  "| ΔNDCG@10 | queries/s | target |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        order = {family: i for i, family in enumerate(FAMILY_ORDER)}
        plain = sorted((c for c in cells if c.setting.seed is None),
                       key=lambda c: (order.get(c.setting.family, 99), c.setting.oversample or 0))
        lines += [_row(c, float32) for c in plain]
        seeded = [c for c in cells if c.setting.seed is not None]
        if seeded:
            lines += ["", "| dimension | B/vector | Matryoshka NDCG@10 | truncation NDCG@10 "
                      "| difference, paired by seed | Matryoshka Recall@100 | truncation Recall@100 | seeds |",
                      "|" + "---:|" * 8]
            for dim in sorted({c.setting.dim for c in seeded}, reverse=True):
                at = {f: [c for c in seeded if c.setting.dim == dim and c.setting.family == f]
                      for f in ("matryoshka", "truncation")}
                cells_ndcg = [format_mean_sd(*mean_sd([c.ndcg_at_10 for c in at[f]])) if at[f] else "-"
                              for f in at]
                cells_recall = [format_mean_sd(*mean_sd([c.recall_at_100 for c in at[f]])) if at[f] else "-"
                                for f in at]
                seeds = len({c.setting.seed for rows in at.values() for c in rows})
                lines.append(f"| {dim} | {4 * dim:,} | {' | '.join(cells_ndcg)} "
                             f"| {paired_difference(at['matryoshka'], at['truncation'])} "
                             f"| {' | '.join(cells_recall)} | {seeds} |")
        lines.append("")
    return "\n".join(lines)


def plot(by_collection: dict[str, list[Cell]], path: Path) -> None:
    """NDCG@10 against bytes per vector in memory (log), one panel per collection: a marker per
    setting (rescored ones labelled with their oversample), a line per dimension family (the mean
    over seeds at each dimension), and the targets as dashed lines under float32."""
    plt = pyplot()
    collections = list(by_collection)
    fig, axes = plt.subplots(1, len(collections), figsize=(5.5 * len(collections), 4.2), squeeze=False)
    for ax, collection in zip(axes[0], collections):
        cells = by_collection[collection]
        series: dict[str, list[tuple[float, float, str]]] = {}
        for cell in cells:
            s = cell.setting
            name = s.family
            if s.family in TARGETS:
                name += " rescored" if s.rescored else " codes only"
            note = f"x{s.oversample:g}" if s.rescored else ""
            series.setdefault(name, []).append((cell.memory_bytes_per_vector, cell.ndcg_at_10, note))
        for name, points in series.items():
            if name in ("matryoshka", "truncation"):  # the mean over seeds at each dimension
                by_bytes: dict[float, list[float]] = {}
                for x, y, _ in points:
                    by_bytes.setdefault(x, []).append(y)
                points = [(x, float(np.mean(ys)), "") for x, ys in by_bytes.items()]
            points = sorted(points)
            line = "o-" if name in ("matryoshka", "truncation") else "o"
            ax.plot([x for x, _, _ in points], [y for _, y, _ in points], line, label=name, markersize=5)
            for x, y, note in points:
                if note:
                    ax.annotate(note, (x, y), textcoords="offset points", xytext=(5, 0), fontsize=6,
                                va="center")
        float32 = reference(cells)
        if float32 is not None:
            for family, tolerance in TARGETS.items():
                ax.axhline(float32.ndcg_at_10 - tolerance, color="#bbbbbb", linestyle="--", linewidth=1)
                ax.text(0.01, float32.ndcg_at_10 - tolerance, f"{family} target", fontsize=6, color="#888888",
                        va="bottom", transform=ax.get_yaxis_transform())  # x: axes fraction, y: NDCG
        ax.set_xscale("log")
        ax.set_xlabel("bytes per vector in memory")
        ax.set_ylabel("NDCG@10")
        ax.set_title(collection)
        ax.legend(fontsize=7, loc="lower right")
    save(fig, path)


# ---------------------------------------------------------------------------------------------- running


def _search_cell(collection: str, setting: Setting, index: Any, ids: list[str], query_vectors: np.ndarray,
                 qrels: Any, query_ids: list[str], top_k: int) -> Cell:
    """Search ``index`` (holding ``ids`` in that order) with every query in one call and score the run."""
    from retrosearch.core.retrieval.metrics import evaluate_run  # lazy: keeps ir-measures out of CLI start-up

    started = time.perf_counter()
    if setting.family in TARGETS:
        scores, positions = index.search_positions(query_vectors, top_k, rescore=setting.rescored,
                                                   oversample=setting.oversample)
        run = {qid: {ids[p]: float(s) for p, s in zip(row_p, row_s) if p >= 0}
               for qid, row_p, row_s in zip(query_ids, positions, scores)}
    else:
        run = index.search(query_vectors, top_k).as_run(query_ids)
    seconds = time.perf_counter() - started
    figures = evaluate_run(qrels, run)
    footprint = index.footprint()
    return Cell(collection, setting, figures["ndcg@10"], figures["recall@100"],
                len(query_ids) / seconds if seconds > 0 else math.inf,
                footprint.per_vector(footprint.memory_bytes), footprint.per_vector(footprint.rescore_bytes),
                len(query_ids), footprint.vectors, {k: v for k, v in index.meta.params.items()
                                                    if k not in ("rescore", "oversample")})


def _index(setting: Setting, meta: Any, ids: list[str], vectors: np.ndarray) -> Any:
    from retrosearch.core.index.faiss_index import FaissIndex  # lazy: keeps faiss out of CLI start-up

    index = FaissIndex(meta, setting.backend.removeprefix("faiss-"), FaissSettings(use_gpu="never"))
    index.add(ids, vectors)
    return index


def run_collection(root: Path, settings: Settings, rows: list[Setting], store: CellStore, split: str = "test",
                   top_k: int = 100, models: dict[str, Path] | None = None,
                   progress: Callable[[str], None] = print) -> None:
    """Every unfinished cell of ``rows`` on the collection at ``root``: each encoder embeds the corpus
    and queries once (or reads its cached exact index), each index kind is built once per encoder and
    dimension and searched in each of its settings."""
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.encoder.dimensions import fingerprint_at
    from retrosearch.core.retrieval import cached_faiss_index, corpus_vectors

    beir = BeirCollection(root)
    if len(beir.corpus) < IVF_MIN_VECTORS and any(s.backend == "faiss-ivfpq" for s in rows):
        progress(f"{beir.name}: faiss-ivfpq skipped ({len(beir.corpus)} documents: too few to train it)")
        rows = [s for s in rows if s.backend != "faiss-ivfpq"]
    todo = [s for s in rows if cell_key(beir.name, s) not in store]
    if not todo:
        progress(f"{beir.name}: every cell done")
        return
    qrels = beir.qrels(split)
    queries = beir.judged_queries(split)
    query_ids = [q.id for q in queries]
    for encoder_name in dict.fromkeys(s.encoder for s in todo):
        run_settings = settings.model_copy(deep=True)
        if encoder_name != BASE:
            run_settings.encoder.model = str((models or {})[encoder_name])
        run_settings.encoder.dimensions = None  # cut here, from one embedding at the model's own dimension
        cached_faiss_index(beir, run_settings)  # embeds the corpus once per encoder; later runs read it
        encoder = Encoder.load(run_settings.encoder)
        ids, vectors, _seconds, _ = corpus_vectors(beir, encoder)
        query_vectors = encoder.encode_queries([q.text for q in queries], desc="embedding queries")
        meta = encoder.index_meta()
        mine = [s for s in todo if s.encoder == encoder_name]
        for dim in dict.fromkeys(s.dim for s in mine):
            width = dim or encoder.native_dim
            cut_meta = meta.model_copy(update={"dim": width, "model_fingerprint": fingerprint_at(
                meta.model_fingerprint, width, encoder.native_dim)})
            docs, cut_queries = encoder.cut(vectors, width), encoder.cut(query_vectors, width)
            for backend in dict.fromkeys(s.backend for s in mine if s.dim == dim):
                group = [s for s in mine if s.dim == dim and s.backend == backend]
                index = _index(group[0], cut_meta, ids, docs)
                for setting in group:
                    cell = _search_cell(beir.name, setting, index, ids, cut_queries, qrels, query_ids, top_k)
                    store.add(cell)
                    progress(f"{beir.name}: {setting.label()}: NDCG@10 {cell.ndcg_at_10:.4f}, "
                             f"R@100 {cell.recall_at_100:.4f}, {cell.memory_bytes_per_vector:,.0f} B/vector")


def finetune_command(collection: Path, out: Path, matryoshka: bool, seed: int, steps: int, model: str,
                     dims: Iterable[int], split: str = "train", threads: int | None = None) -> list[str]:
    """The ``retrosearch train finetune`` arguments of one fine-tune (the same for both kinds but
    the Matryoshka loss). ``threads``: torch threads of its one Ray Train worker (left out, one)."""
    command = ["train", "finetune", "--model", model, "--collection", str(collection), "--split", split,
               "--eval-split", "", "--out", str(out), "--steps", str(steps), "--seed", str(seed)]
    if matryoshka:
        command += ["--matryoshka-dims", ",".join(str(d) for d in dims)]
    if threads:
        command += ["--threads", str(threads)]
    return command


def ensure_finetunes(train_collection: Path, out: Path, seeds: Iterable[int], steps: int, model: str,
                     dims: Iterable[int], progress: Callable[[str], None] = print,
                     threads: int | None = None) -> dict[str, Path]:
    """Every fine-tune of the dimension rows, trained by its own ``retrosearch train finetune`` (on
    ``threads`` torch threads) unless its exported model is there (an interrupted one resumes from
    its checkpoint)."""
    models = {}
    for seed in seeds:
        for matryoshka in (True, False):
            name = finetune_name(matryoshka, seed)
            folder = out / "models" / name
            models[name] = folder
            if (folder / "retrosearch.json").exists():
                continue
            command = finetune_command(train_collection, folder, matryoshka, seed, steps, model, dims,
                                       threads=threads)
            progress(f"{name}: retrosearch {' '.join(command)}")
            if subprocess.run([sys.executable, "-m", "retrosearch.cli", *command]).returncode != 0:
                raise opt.fail(f"the fine-tune {name} failed; rerun the same command to resume it", 1)
    return models


def write_outputs(store: CellStore, out: Path) -> list[str]:
    """``vectors.json`` (with the summary), ``vectors.md`` and ``vectors.png`` from the finished cells."""
    by_collection = store.by_collection()
    lines = summary(by_collection)
    store.write({"summary": lines, "targets": TARGETS})
    listed = "\n".join(f"- {line}" for line in lines)
    (out / "vectors.md").write_text(markdown(by_collection) + "\n" + listed + "\n")
    if by_collection:
        plot(by_collection, out / "vectors.png")
    return lines


@opt.with_settings(opt.ENCODER)
def vectors_command(
    collection: Annotated[list[Path], typer.Option(help="BEIR folder; repeat for several.")],
    out: Annotated[Path, typer.Option(help="Folder for vectors.json, .md, .png and the fine-tuned models/.")],
    split: Annotated[str, typer.Option(help="qrels split.")] = "test",
    oversample: Annotated[
        list[float], typer.Option("--oversample", help="Oversample of the rescored rows (repeatable).")
    ] = list(OVERSAMPLE),
    finetune_steps: Annotated[
        int, typer.Option(help="Steps of each fine-tune of the dimension rows (0: none, no such rows).")
    ] = 0,
    train_collection: Annotated[
        Optional[Path], typer.Option(help="BEIR folder whose train split the fine-tunes learn from.")
    ] = None,
    seed: Annotated[list[int], typer.Option("--seed", help="Seeds of the fine-tunes (repeatable).")] = list(
        SEEDS),
    matryoshka_dims: Annotated[
        str, typer.Option(help="Dimensions of the Matryoshka loss and of the dimension rows, comma-separated")
    ] = ",".join(str(d) for d in MATRYOSHKA_DIMS),
    settings: Settings = None,
) -> None:
    """NDCG@10 and Recall@100 of float32, int8 and binary (codes only and rescored at each oversample),
    IVF-PQ and (with --finetune-steps) Matryoshka against truncation at each dimension, with bytes per
    vector and queries/s; targets checked. Finished cells are kept: rerun to resume. --threads also
    sets the fine-tunes' torch threads (a Ray Train worker uses one unless told)."""
    console = Console()
    if settings.encoder.dimensions:
        raise opt.fail("bench vectors cuts the vectors itself (the dimension rows, --matryoshka-dims); "
                       "leave out --dimensions")
    with opt.user_errors():
        dims = [int(d) for d in matryoshka_dims.split(",") if d.strip()]
        if finetune_steps and train_collection is None:
            raise opt.fail("--finetune-steps needs --train-collection (a BEIR folder with a train split)")
        about = {"model": settings.encoder.model, "split": split, "cpus": os.cpu_count(),
                 "finetune_steps": finetune_steps, "train_collection": str(train_collection or "")}
        store = CellStore(out / "vectors.json", about=about)
        for root in collection:
            run_collection(root, settings, quantization_settings(oversample), store, split, progress=console.print)
        # Seed by seed: its two fine-tunes, then their cells, so an interrupted run keeps whole seeds and
        # a seed whose cells are all in vectors.json is not trained again (its models may be long gone).
        for one in seed if finetune_steps else []:
            rows = dimension_settings([one], dims)
            names = [BeirCollection(root).name for root in collection]
            if all(cell_key(name, row) in store for name in names for row in rows):
                continue
            models = ensure_finetunes(train_collection, out, [one], finetune_steps, settings.encoder.model, dims,
                                      progress=console.print, threads=settings.encoder.threads)
            for root in collection:
                run_collection(root, settings, rows, store, split, models=models, progress=console.print)
    lines = write_outputs(store, out)
    console.print(markdown(store.by_collection()), soft_wrap=True)  # table rows stay on one line each
    for line in lines:
        console.print(line, soft_wrap=True)
    console.print(f"wrote {out}/vectors.json, vectors.md, vectors.png")
