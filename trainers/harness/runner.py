"""The driver side: start (or join) Ray, run a method as a ``TorchTrainer``, copy the export out.

Resuming is re-running: the same ``--out`` (hence storage folder) and run name find the run's
last checkpoint, and every worker restarts from it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from retrosearch.core.ray_runtime import ensure_ray
from retrosearch.trainers.harness.checkpoints import EXPORT_DIR
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.harness.events import EventType, append_event, progress
from retrosearch.trainers.harness.loop import train_loop_per_worker
from retrosearch.trainers.harness.method import Method
from retrosearch.trainers.harness.ray_report import CheckpointEvents
from retrosearch.trainers.harness.run_log import LOG_FILE

__all__ = ["LOG_FILE", "TrainResult", "fit", "run_dir"]


@dataclass
class TrainResult:
    """Where the trained model went and how the run ended."""

    out: Path
    run_dir: Path
    checkpoint: str
    metrics: dict[str, Any]
    steps: int  # the run's optimiser steps (from epochs when they were given)


def run_dir(method: Method, config: TrainConfig) -> Path:
    """The folder Ray Train keeps this run's checkpoints (and our log and events) in."""
    return config.resolved_storage() / (config.name or method.name)


def _check_local_resources(config: TrainConfig, available: dict[str, float]) -> None:
    # A local Ray never grows: asking for more than it has would wait forever for the workers.
    if config.placement_strategy == "STRICT_SPREAD" and config.workers > 1:
        raise ValueError(
            f"placement_strategy STRICT_SPREAD puts each of the {config.workers} workers on its own node, "
            "and a local Ray is one node; use PACK or SPREAD (or --ray-address for a cluster)"
        )
    wanted = {"CPU": config.workers * config.cpus_per_worker, "GPU": config.workers if config.use_gpu else 0}
    for kind, count in wanted.items():
        have = available.get(kind, 0)
        if count > have:
            raise ValueError(
                f"{config.workers} workers need {count} {kind}s but the local Ray has {have:g}; "
                "use fewer --workers (or --ray-address for a cluster)"
            )


def fit(method: Method, config: TrainConfig) -> TrainResult:
    """Train ``method`` as ``config`` says and write the export to ``config.out``."""
    ensure_ray(config.ray_address)
    if config.ray_address is None:
        _check_local_resources(config, ray.cluster_resources())
    examples = method.load_examples()
    config = config.for_examples(len(examples))
    if len(examples) < config.batch_size:
        raise ValueError(f"{len(examples)} training examples are fewer than one batch ({config.batch_size})")
    folder = run_dir(method, config)
    folder.mkdir(parents=True, exist_ok=True)
    resources: dict[str, float] = {"CPU": config.cpus_per_worker}
    if config.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "method": method,
            "config": config,
            "examples": ray.put(examples),
            "run_dir": folder,
        },
        # TorchTrainer picks the process-group backend itself: nccl with GPUs, gloo without.
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=config.use_gpu,
            resources_per_worker=resources,
            placement_strategy=config.placement_strategy,
        ),
        run_config=RunConfig(
            name=folder.name,
            storage_path=str(folder.parent),
            checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
            failure_config=FailureConfig(max_failures=config.max_failures),
            callbacks=[CheckpointEvents(folder)],
        ),
    )
    try:
        result = _finish(trainer.fit(), folder, config)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        append_event(folder, EventType.FAILED, progress(folder).step, error=reason)
        raise
    append_event(folder, EventType.FINISHED, result.steps, metrics=result.metrics, out=str(result.out))
    return result


def _finish(result: Any, folder: Path, config: TrainConfig) -> TrainResult:
    """Copy the export of Ray Train's final checkpoint to ``config.out``."""
    if result.checkpoint is None:
        raise RuntimeError(f"training in {folder} ended without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        export = Path(ckpt) / EXPORT_DIR
        if not export.is_dir():
            raise RuntimeError(
                f"the last checkpoint {result.checkpoint.path} holds no export (was the run cut short?)"
            )
        if config.out.exists():
            shutil.rmtree(config.out)
        shutil.copytree(export, config.out)
    return TrainResult(config.out, folder, result.checkpoint.path, dict(result.metrics or {}), config.steps)
