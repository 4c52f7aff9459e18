"""An experiment: the same pipelines run as variants x seeds x collections, and their figures gathered.

Each collection names a pipeline file. Every run is that file with the experiment's ``overrides``,
then the variant's, then its seed in the training stages; it runs in
``WORK_DIR/<collection>/<variant>/seed-<n>/`` (``.../<variant>/`` for a variant that trains
nothing, which runs once). A randomly initialised starting model (``model: random:bert-small``)
takes the run's seed: each seed starts from its own weights, and every arm of a seed from the
same. Runs are each other's peers, so a stage with the same key runs once and is shared: mining
with the starting model within a collection, a pretraining on corpora that several collections
name across them. A rerun skips what is done, as ``pipeline run`` does, and an interrupted
training resumes.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from retrosearch.core.encoder import random_init
from retrosearch.core.retrieval.seeds import mean_sd, paired_differences
from retrosearch.pipeline.config import (
    PRETRAIN_SECTIONS,
    PipelineConfig,
    PipelineConfigError,
    StrictModel,
    expand_variables,
    format_errors,
    parse_config,
    read_yaml,
)
from retrosearch.pipeline.runner import finished, recipe_key
from retrosearch.pipeline.runner import run as run_pipeline
from retrosearch.pipeline.stages import Record
from retrosearch.trainers.harness.events import EVENTS_FILE, EventType, read_events

Echo = Callable[[str], None]
METRICS = ("ndcg@10", "mrr@10", "recall@100")
#: Read where a run has them (means only): the queries' mean cosine after fine-tuning, and NDCG@10
#: and that cosine of the pretrained model before it (with ``stages.evaluate.after_pretrain``).
SPREAD_COLUMNS = ("query_cosine", "pretrained ndcg@10", "pretrained query_cosine")


class Variant(StrictModel):
    """One arm of the comparison: settings laid over the collection's pipeline file."""

    label: str | None = Field(None, description="Name in the table and plot (default: the variant's key).")
    stages: dict[str, dict[str, Any]] = Field(default_factory=dict)
    collections: list[str] | None = Field(
        None, min_length=1, description="Run on these collections only (default: all of them).")
    seeds: list[int] | None = Field(
        None, min_length=1, description="Run with these seeds only (default: the experiment's); a costly "
                                        "arm can be tried on fewer seeds, and the report shows how many.")


class ExperimentConfig(StrictModel):
    """Collections (pipeline files), variants and seeds, and where the runs and the report go."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    work_dir: Path
    out: Path = Field(description="Folder of the results JSON, the summary and the plot.")
    seeds: list[int] = Field(min_length=1)
    collections: dict[str, Path] = Field(min_length=1, description="Collection name: its pipeline file.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Laid over every run's pipeline.")
    variants: dict[str, Variant] = Field(min_length=1)
    baseline: str | None = Field(
        None, description="The variant every other is compared with, seed by seed (NDCG@10 difference).")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must differ")
        return seeds

    @model_validator(mode="after")
    def _variants_name_known_collections_and_seeds(self) -> ExperimentConfig:
        if self.baseline is not None and self.baseline not in self.variants:
            raise ValueError(f"baseline: {self.baseline} is not a variant ({', '.join(self.variants)})")
        for name, variant in self.variants.items():
            unknown = sorted(set(variant.collections or ()) - set(self.collections))
            if unknown:
                raise ValueError(f"variants.{name}.collections: {', '.join(unknown)} not among the collections "
                                 f"({', '.join(self.collections)})")
            extra = sorted(set(variant.seeds or ()) - set(self.seeds))
            if extra:
                raise ValueError(f"variants.{name}.seeds: {', '.join(map(str, extra))} not among the "
                                 f"experiment's seeds ({', '.join(map(str, self.seeds))})")
        return self


@dataclass
class Run:
    """One pipeline of the experiment."""

    collection: str
    variant: str
    seed: int | None  # None: the variant trains nothing, so it runs once
    pipeline: PipelineConfig

    @property
    def label(self) -> str:
        return f"{self.collection}/{self.variant}" + ("" if self.seed is None else f"/seed-{self.seed}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _lay_over(pipeline: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``pipeline``; a pretraining that changes method keeps, of the pipeline's
    pretraining settings, those the new method has (steps and rates from RetroMAE to MLM, nothing to
    ``none``): RetroMAE's masks mean nothing to MLM, while what ``over`` sets itself is checked as given."""
    pretrain = (over.get("stages") or {}).get("pretrain")
    if isinstance(pretrain, dict) and pretrain.get("method") in PRETRAIN_SECTIONS:
        before = ((pipeline.get("stages") or {}).get("pretrain") or {})
        if isinstance(before, dict) and before.get("method", "none") != pretrain["method"]:
            known = PRETRAIN_SECTIONS[pretrain["method"]].model_fields
            # a copy, with the pretraining section cut to what the method knows
            pipeline = _merge(pipeline, {})
            pipeline["stages"]["pretrain"] = {k: v for k, v in before.items() if k in known}
    return _merge(pipeline, over)


def _trains(pipeline: PipelineConfig) -> bool:
    stages = pipeline.stages
    return stages.pretrain.method != "none" or stages.finetune.enabled


def load_experiment(path: Path) -> ExperimentConfig:
    """Read and validate an experiment file (its pipeline files are read by :func:`expand`)."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise PipelineConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        return ExperimentConfig.model_validate(expand_variables(data))
    except ValidationError as exc:
        raise PipelineConfigError(format_errors(str(path), exc)) from None


def expand(experiment: ExperimentConfig, source: str = "<experiment>") -> list[Run]:
    """Every run, validated, in rounds: each round runs one seed of every collection and variant
    (the untrained variants in the first), so an experiment stopped part-way has compared every
    variant on the same seeds."""
    runs = []
    for collection, pipeline_file in experiment.collections.items():
        base = read_yaml(pipeline_file)
        if not isinstance(base, dict):
            raise PipelineConfigError(f"{pipeline_file}: expected a mapping of settings at the top level")
        base = _lay_over(base, experiment.overrides)
        for name, variant in experiment.variants.items():
            if variant.collections is not None and collection not in variant.collections:
                continue
            data = _lay_over(base, {"stages": variant.stages})
            where = f"{source}: collections.{collection} x variants.{name}"
            once = parse_config({**data, "work_dir": "."}, where)
            seeds: list[int | None] = list(variant.seeds or experiment.seeds) if _trains(once) else [None]
            for seed in seeds:
                run = copy.deepcopy(data)
                folder = experiment.work_dir / collection / name
                if seed is not None:
                    folder = folder / f"seed-{seed}"
                    for stage in ("pretrain", "finetune"):
                        section = run.setdefault("stages", {}).setdefault(stage, {})
                        if section.get("method", "set") != "none":
                            section["seed"] = seed
                    _seed_random_models(run, seed)
                run.update(name=f"{experiment.name}-{collection}-{name}".replace("+", "-"), work_dir=str(folder))
                runs.append(Run(collection, name, seed, parse_config(run, where)))
    round_of = {seed: n for n, seed in enumerate(experiment.seeds)}
    return sorted(runs, key=lambda r: 0 if r.seed is None else round_of[r.seed])  # stable: collection, variant


def _seed_random_models(run: dict[str, Any], seed: int) -> None:
    """Give the run's randomly initialised starting models (``random:<architecture>``) its seed."""
    pretrain = (run.get("stages") or {}).get("pretrain") or {}
    for section in (run, pretrain):
        model = section.get("model")
        if isinstance(model, str) and random_init.is_random(model):
            section["model"] = random_init.with_seed(model, seed)


def run_figures(records: list[Record]) -> dict[str, Any]:
    """What the report keeps of one run: the evaluation's figures and each training stage's cost.

    The cost is per step (the wall time of the steps the last process ran, over their count), so a
    run that was interrupted and resumed costs what an uninterrupted one does.
    """
    by_name = {r.name: r for r in records}
    evaluate = by_name.get("evaluate")
    out: dict[str, Any] = {m: (evaluate.figures.get(m) if evaluate else None) for m in METRICS}
    if evaluate is not None:
        # How far apart the queries' vectors are, after fine-tuning and (with after_pretrain) before it
        out["query_cosine"] = evaluate.figures.get("query_cosine")
        before = evaluate.figures.get("pretrained")
        if isinstance(before, dict):
            out["pretrained"] = {k: before.get(k) for k in (*METRICS, "query_cosine")}
    for stage in ("pretrain", "finetune"):
        record = by_name.get(stage)
        if record is not None and record.status != "off":
            figures = record.figures
            steps, train_s = figures.get("steps"), figures.get("train_s")
            ran = (steps or 0) - figures.get("resumed_from_step", 0)
            out[stage] = {
                "steps": steps, "step_s": round(train_s / ran, 3) if train_s and ran > 0 else None,
                "tokens_per_s": figures.get("tokens_per_s"), "loss": figures.get("loss"),
                "resumed_from_step": figures.get("resumed_from_step"),
            }
    return out


def figure(figures: dict[str, Any], column: str) -> float | None:
    """One run's ``column``: a metric or ``query_cosine``, or ``pretrained <that>`` for the model
    before fine-tuning; None when the run did not measure it."""
    if column.startswith("pretrained "):
        return (figures.get("pretrained") or {}).get(column.removeprefix("pretrained "))
    return figures.get(column)


def summarise(results: list[dict[str, Any]], experiment: ExperimentConfig) -> list[dict[str, Any]]:
    """Per collection and variant: each metric's mean, sample standard deviation and number of seeds."""
    rows = []
    for collection in experiment.collections:
        for name, variant in experiment.variants.items():
            runs = [r for r in results if r["collection"] == collection and r["variant"] == name]
            if not runs:
                continue
            row: dict[str, Any] = {"collection": collection, "variant": name, "label": variant.label or name,
                                   "n": len(runs), "seeds": [r["seed"] for r in runs]}
            for metric in METRICS:
                values = [r["figures"][metric] for r in runs if r["figures"].get(metric) is not None]
                row[metric], row[f"{metric} sd"] = mean_sd(values) if values else (None, None)
            for column in SPREAD_COLUMNS:
                values = [v for r in runs if (v := figure(r["figures"], column)) is not None]
                if values:
                    row[column] = statistics.fmean(values)
            if experiment.baseline is not None and name != experiment.baseline:
                base = [r for r in results if r["collection"] == collection and r["variant"] == experiment.baseline]
                row["paired"] = {metric: paired_difference(runs, base, metric) for metric in METRICS}
                row["baseline"] = row["paired"]["ndcg@10"]
            for stage in ("pretrain", "finetune"):
                costs = [r["figures"][stage] for r in runs if stage in r["figures"]]
                if costs:
                    row[stage] = {
                        "steps": costs[0]["steps"],
                        "step_s": statistics.fmean(c["step_s"] or 0.0 for c in costs),
                        "tokens_per_s": statistics.fmean(c["tokens_per_s"] or 0.0 for c in costs),
                    }
            rows.append(row)
    return rows


def paired_difference(runs: list[dict[str, Any]], baseline: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """``metric`` of ``runs`` minus the baseline's, paired by seed (a run without a seed, such as
    zero-shot, pairs with every seed of the other side): the mean and sample sd of the differences.

    Pairing takes out what a seed shares between arms (the batches' order), so the spread says how
    sure the difference is rather than how much each arm moves.
    """
    def values(side: list[dict[str, Any]]) -> list[tuple[int | None, float]]:
        return [(r["seed"], r["figures"][metric]) for r in side if r["figures"].get(metric) is not None]

    differences = paired_differences(values(runs), values(baseline))
    if not differences:
        return None
    mean, sd = mean_sd(differences)
    return {"metric": metric, "mean": mean, "n": len(differences), "sd": sd}


def loss_curve(record: Record) -> list[dict[str, float]] | None:
    """The losses a training stage logged, step by step (the last attempt's where a run resumed), read
    from its run's events; None when there are none to read."""
    checkpoint = record.outputs.get("checkpoint")
    run_dir = Path(checkpoint).parent if checkpoint else None
    if run_dir is None or not (run_dir / EVENTS_FILE).is_file():
        return None
    points: dict[int, dict[str, float]] = {}
    for event in read_events(run_dir):
        if event.type == EventType.PROGRESS:
            losses = {k: v for k, v in event.details.items() if k == "loss" or k.startswith("loss/")}
            points[event.step] = {"step": event.step, **losses}
    return [points[step] for step in sorted(points)] or None


def _result(run: Run, records: list[Record]) -> dict[str, Any]:
    pretrain = next((r for r in records if r.name == "pretrain" and r.status != "off"), None)
    curve = loss_curve(pretrain) if pretrain is not None else None
    return {
        "collection": run.collection, "variant": run.variant, "seed": run.seed,
        "work_dir": str(run.pipeline.work_dir), "figures": run_figures(records),
        "stages": {r.name: {"status": r.status, "seconds": r.seconds} for r in records},
        **({"curves": {"pretrain": curve}} if curve else {}),
    }


def _peers(run: Run, runs: list[Run]) -> list[Path]:
    # Every other run: a stage's key holds all it reads (the collection's files among them), so only
    # the same work is shared.
    return [r.pipeline.work_dir for r in runs if r is not run]


def payload_of(experiment: ExperimentConfig, runs: list[Run], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The results file: the experiment, the planned runs, the finished ones, the summary, the settings."""
    return {"experiment": experiment.model_dump(mode="json"), "planned": [r.label for r in runs],
            "runs": results, "summary": summarise(results, experiment), "settings": settings_tried(runs)}


def write_results(experiment: ExperimentConfig, payload: dict[str, Any]) -> Path:
    """``OUT/results.json``."""
    experiment.out.mkdir(parents=True, exist_ok=True)
    path = experiment.out / "results.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def recorded_results(experiment: ExperimentConfig) -> dict[tuple[str, str, int | None], dict[str, Any]]:
    """The runs ``OUT/results.json`` holds from earlier, by (collection, variant, seed); empty when
    there is none. Each carries the recipe key it ran with."""
    path = experiment.out / "results.json"
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text()).get("runs", [])
    except (json.JSONDecodeError, AttributeError) as exc:
        raise PipelineConfigError(f"{path}: not a results file of an experiment ({exc})") from None
    return {(r["collection"], r["variant"], r["seed"]): r for r in runs if r.get("key")}


def _kept(run: Run, recorded: dict[tuple[str, str, int | None], dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The recorded result of ``run`` when it ran with the same recipe (None: it must run)."""
    old = recorded.get((run.collection, run.variant, run.seed))
    return old if old is not None and old["key"] == key else None


def select(runs: list[Run], patterns: Sequence[str]) -> list[Run]:
    """The runs whose label (``collection/variant[/seed-N]``, as ``--list`` prints it) matches one of
    the glob ``patterns``; every run when there are none. A pattern that matches no run is an error
    (a typo would otherwise run nothing and say nothing)."""
    if not patterns:
        return list(runs)
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(r.label, p) for r in runs)]
    if unmatched:
        raise PipelineConfigError(
            f"--only {', '.join(unmatched)}: no run's label matches (labels look like {runs[0].label}; "
            "--list prints them all)")
    return [r for r in runs if any(fnmatch.fnmatchcase(r.label, p) for p in patterns)]


def run_experiment(experiment: ExperimentConfig, runs: list[Run], echo: Echo = print,
                   selected: list[Run] | None = None) -> dict[str, Any]:
    """Run (or skip) every run, or only the ``selected`` ones; the results file is rewritten after
    each (with the records of the runs still to come) and at the end, so an interrupted experiment
    keeps what it finished and what was recorded before.

    A run the results file already holds with the same recipe key is kept from there, not run
    again: the file is the experiment's record, and it outlives the work dir (a lost machine, a
    cleaned disk), so a long grid can go on from wherever its record was last committed. A run
    outside ``selected`` is reported when it is finished (its manifests, else the record) and
    otherwise left for another time, so the record keeps every cell while a part of the grid runs.
    """
    recorded = recorded_results(experiment)
    chosen = {id(r) for r in (runs if selected is None else selected)}
    results: list[dict[str, Any]] = []
    for number, run in enumerate(runs, start=1):
        key = recipe_key(run.pipeline)
        kept = _kept(run, recorded, key)
        if kept is not None:
            echo(f"[experiment] {number}/{len(runs)} {run.label}: kept from {experiment.out / 'results.json'} "
                 "(the same recipe; delete the run there to run it again)")
            results.append(kept)
            continue
        if id(run) not in chosen:
            records = finished(run.pipeline, _peers(run, runs))
            if records is not None:
                results.append({**_result(run, records), "key": key})
            echo(f"[experiment] {number}/{len(runs)} {run.label}: "
                 + ("finished earlier" if records is not None else "not selected (--only): left for another time"))
            continue
        echo(f"[experiment] {number}/{len(runs)} {run.label}")
        results.append({**_result(run, run_pipeline(run.pipeline, echo, peers=_peers(run, runs))), "key": key})
        # the runs still to visit keep their records, so an interruption here loses none of them
        later = [old for r in runs[number:] if (old := recorded.get((r.collection, r.variant, r.seed)))]
        write_results(experiment, payload_of(experiment, runs, results + later))
    payload = payload_of(experiment, runs, results)
    write_results(experiment, payload)
    return payload


def collect(experiment: ExperimentConfig, runs: list[Run]) -> dict[str, Any]:
    """The results of the runs that are finished now: from the results file where it holds them
    with the same recipe (as they ran: which stages ran and which were shared), else from their
    manifests; nothing runs."""
    recorded = recorded_results(experiment)
    results = []
    for run in runs:
        key = recipe_key(run.pipeline)
        if (kept := _kept(run, recorded, key)) is not None:
            results.append(kept)
        elif (records := finished(run.pipeline, _peers(run, runs))) is not None:
            results.append({**_result(run, records), "key": key})
    return payload_of(experiment, runs, results)


def settings_tried(runs: list[Run]) -> dict[str, Any]:
    """Per collection and variant, the training settings that decide the result (steps, rates, masks)."""
    keep = ("steps", "epochs", "batch_size", "lr", "max_length", "max_blocks", "encoder_mask_ratio",
            "decoder_mask_ratio", "group_size", "temperature", "passage_max_length")
    out: dict[str, Any] = {}
    for run in runs:
        key = f"{run.collection}/{run.variant}"
        if key in out:
            continue
        stages = run.pipeline.stages
        entry: dict[str, Any] = {}
        if stages.pretrain.method != "none":
            entry["pretrain"] = {"method": stages.pretrain.method,
                                 **{k: getattr(stages.pretrain, k) for k in keep if hasattr(stages.pretrain, k)}}
        if stages.finetune.enabled:
            entry["finetune"] = {k: getattr(stages.finetune, k) for k in keep if hasattr(stages.finetune, k)}
            entry["mine"] = {"model": stages.mine.model, "rank_start": stages.mine.rank_start,
                             "rank_end": stages.mine.rank_end, "num_negatives": stages.mine.num_negatives}
        out[key] = entry
    return out
