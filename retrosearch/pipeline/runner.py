"""Decide per stage whether to run, resume or skip; run what must run; summarise.

A stage is skipped when its folder holds a finished manifest with the key its settings and inputs
give now, and its outputs still exist. A ``running`` manifest with the same key is an interrupted
run: the stage runs again in the same folder, and the trainers resume from their last checkpoint.
Any other manifest means something changed: the folder is emptied and the stage runs afresh.

Runs of one experiment share work: given ``peers`` (other runs' work dirs), a stage whose key a
peer has finished is taken from there instead of being run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrosearch.pipeline.config import PipelineConfig
from retrosearch.pipeline.holdout import prepare_collection
from retrosearch.pipeline.manifest import (
    Manifest,
    changed_keys,
    hash_files,
    hash_json,
    now,
    read_manifest,
    stage_key,
    write_manifest,
)
from retrosearch.pipeline.stages import Record, Stage, build_stages, reset_folder

Echo = Callable[[str], None]


@dataclass
class Decision:
    """What a stage will do and why."""

    stage: Stage
    action: str  # run, resume, skip, off
    reason: str
    key: str | None = None
    settings: dict | None = None
    inputs: dict[str, str] | None = None
    manifest: Manifest | None = None


def _inputs(stage: Stage, records: dict[str, Record]) -> dict[str, str]:
    inputs = {f"file:{name}": digest for name, digest in hash_files(stage.input_files()).items()}
    inputs.update({f"stage:{name}": records[name].output_hash for name in stage.needs})
    return inputs


def _peer_manifest(stage: Stage, key: str, peers: Sequence[Path]) -> tuple[Path, Manifest] | None:
    for peer in peers:
        folder = peer.resolve() / stage.name
        if folder == stage.folder:
            continue
        manifest = read_manifest(folder)
        if manifest is not None and manifest.key == key and manifest.status == "done" and stage.outputs_exist(manifest.outputs):
            return peer, manifest
    return None


def decide(stage: Stage, records: dict[str, Record], peers: Sequence[Path] = ()) -> Decision:
    """Compare the stage's key (from its settings, input files and upstream outputs) with its manifest,
    then with the ``peers``' manifests of the same stage."""
    if not stage.enabled:
        return Decision(stage, "off", stage.off_reason())
    settings, inputs = stage.settings(), _inputs(stage, records)
    key = stage_key(stage.name, settings, inputs)
    old = read_manifest(stage.folder)
    decision = Decision(stage, "run", "", key, settings, inputs, old)
    if old is None:
        decision.reason = "no manifest: never ran" if not stage.folder.exists() else "no manifest"
    elif old.key == key and old.status == "done":
        if stage.outputs_exist(old.outputs):
            decision.action, decision.reason = "skip", "done: manifest matches"
        else:
            decision.reason = "outputs missing"
    elif old.key == key:
        where = stage.progress()
        decision.action = "resume" if where else "run"
        decision.reason = f"interrupted ({where}): resumes from the checkpoint" if where else "interrupted: reruns"
    else:
        changes = changed_keys(old.settings, settings)
        changed_inputs = sorted(k for k in old.inputs.keys() | inputs.keys() if old.inputs.get(k) != inputs.get(k))
        parts = []
        if changes:
            parts.append("settings changed: " + ", ".join(changes))
        if changed_inputs:
            parts.append("inputs changed: " + ", ".join(n.split(":", 1)[1] for n in changed_inputs))
        decision.reason = "; ".join(parts) or "key changed"
    if decision.action == "run":
        shared = _peer_manifest(stage, key, peers)
        if shared is not None:
            decision.action, decision.manifest = "skip", shared[1]
            decision.reason = f"done in {shared[0]}: the same key"
    return decision


def plan(pipeline: PipelineConfig, peers: Sequence[Path] = ()) -> list[Decision]:
    """What :func:`run` would do, without doing it.

    Once a stage would run, the stages reading its output are shown as running too: their key
    depends on an output that does not exist yet.
    """
    records: dict[str, Record] = {}
    decisions: list[Decision] = []
    rerun: set[str] = set()
    prepare_collection(pipeline)
    for stage in build_stages(pipeline):
        upstream_runs = [n for n in stage.needs if n in rerun]
        if upstream_runs and not stage.enabled:
            # An off stage passes its upstream's output on: it changes when that does.
            decisions.append(Decision(stage, "off", stage.off_reason()))
            rerun.add(stage.name)
            continue
        if upstream_runs:
            verb = "runs" if len(upstream_runs) == 1 else "run"
            decision = Decision(stage, "run", f"upstream {' and '.join(upstream_runs)} {verb} first")
            old = read_manifest(stage.folder)
            if old is not None and old.status == "running" and stage.progress():
                decision.reason += f" (an interrupted run at {stage.progress()} will be discarded unless its inputs come out the same)"
        else:
            decision = decide(stage, records, peers)
        decisions.append(decision)
        if decision.action in ("run", "resume"):
            rerun.add(stage.name)
        elif decision.action == "skip":
            assert decision.manifest is not None
            records[stage.name] = _record(decision.manifest, "skipped", decision.reason)
        else:
            records[stage.name] = stage.passthrough(records)
    return decisions


def recipe_key(pipeline: PipelineConfig) -> str:
    """A digest of what decides a pipeline's results before anything runs: every enabled stage's
    settings and the content of the files it reads. Upstream outputs are left out (they follow from
    these), so two pipelines with the same recipe are the same experiment cell wherever they run."""
    prepare_collection(pipeline)
    recipe = {stage.name: {"settings": stage.settings(), "files": hash_files(stage.input_files())}
              for stage in build_stages(pipeline) if stage.enabled}
    return hash_json(recipe)


def finished(pipeline: PipelineConfig, peers: Sequence[Path] = ()) -> list[Record] | None:
    """Every stage's record when the pipeline has nothing left to run (its own or its peers'
    manifests match), else None; runs nothing."""
    decisions = plan(pipeline, peers)
    if any(d.action in ("run", "resume") for d in decisions):
        return None
    records: dict[str, Record] = {}
    for decision in decisions:
        if decision.action == "skip":
            assert decision.manifest is not None
            records[decision.stage.name] = _record(decision.manifest, "skipped", decision.reason)
        else:
            records[decision.stage.name] = decision.stage.passthrough(records)
    return list(records.values())


def _record(manifest: Manifest, status: str, reason: str) -> Record:
    return Record(
        manifest.stage, status, dict(manifest.outputs), manifest.output_hash or "", dict(manifest.figures),
        manifest.seconds, reason,
    )


def run(pipeline: PipelineConfig, echo: Echo = print, peers: Sequence[Path] = ()) -> list[Record]:
    """Run the pipeline: each stage runs, resumes or is skipped; returns every stage's record."""
    records: dict[str, Record] = {}
    prepare_collection(pipeline)
    stages = build_stages(pipeline)
    for number, stage in enumerate(stages, start=1):
        label = f"[pipeline] {number}/{len(stages)} {stage.name}"
        decision = decide(stage, records, peers)
        if decision.action == "off":
            records[stage.name] = stage.passthrough(records)
            echo(f"{label}: off ({decision.reason})")
            continue
        if decision.action == "skip":
            assert decision.manifest is not None
            records[stage.name] = _record(decision.manifest, "skipped", decision.reason)
            echo(f"{label}: skipped ({decision.reason})")
            continue
        records[stage.name] = _execute(stage, decision, records, label, echo)
    return list(records.values())


def _execute(stage: Stage, decision: Decision, records: dict[str, Record], label: str, echo: Echo) -> Record:
    assert decision.key is not None and decision.settings is not None and decision.inputs is not None
    resuming = decision.action == "resume" or (
        decision.manifest is not None and decision.manifest.key == decision.key
    )
    if not resuming:
        reset_folder(stage.folder)
    echo(f"{label}: {'resuming' if decision.action == 'resume' else 'running'} ({decision.reason})")
    manifest = Manifest(
        stage=stage.name, key=decision.key, status="running", settings=decision.settings,
        inputs=decision.inputs, started_at=now(),
    )
    write_manifest(stage.folder, manifest)
    started = time.perf_counter()
    result = stage.run(records)
    seconds = round(time.perf_counter() - started, 1)
    manifest = manifest.model_copy(
        update={
            "status": "done", "outputs": result.outputs, "output_hash": result.output_hash,
            "figures": result.figures, "seconds": seconds, "finished_at": now(),
        }
    )
    write_manifest(stage.folder, manifest)
    status = "resumed" if "resumed_from_step" in result.figures else "ran"
    echo(f"{label}: {status} in {seconds:.1f}s {format_figures(result.figures)}".rstrip())
    return Record(stage.name, status, result.outputs, result.output_hash, result.figures, seconds, decision.reason)


def format_figures(figures: dict, prefix: str = "") -> str:
    """``ndcg@10 0.6451, recall@100 0.925, pretrained ndcg@10 0.61``: figures on one line."""
    parts = []
    for name, value in figures.items():
        if isinstance(value, dict):
            nested = format_figures(value, f"{prefix}{name} ")
            if nested:
                parts.append(nested)
        else:
            parts.append(f"{prefix}{name} {value:g}" if isinstance(value, float) else f"{prefix}{name} {value}")
    return ", ".join(parts)
