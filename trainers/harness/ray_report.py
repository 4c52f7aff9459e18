"""Everything the harness says to Ray Train: the worker's model wrapping, restored checkpoint and
reports, and the controller callback that records registered checkpoints as run events."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
from torch import nn

from retrosearch.trainers.harness.events import EventType, append_event


def prepare_model(model: nn.Module) -> nn.Module:
    """``model`` on this worker's device, wrapped for DDP when there are several workers."""
    return ray.train.torch.prepare_model(model)


@contextlib.contextmanager
def restored_checkpoint() -> Iterator[tuple[Path, str] | None]:
    """The checkpoint Ray Train hands this worker to resume from, as (local folder, storage path)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder), checkpoint.path


def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
    """Report a step's metrics (and, from rank 0, its checkpoint folder) to Ray Train."""
    checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
    ray.train.report(metrics, checkpoint=checkpoint)


class CheckpointEvents(ray.train.UserCallback):
    """Writes a ``checkpoint`` event once Ray Train has registered a reported checkpoint.

    It runs in the controller, on the driver's node, after the checkpoint manager: when the event
    is there, rerunning the run resumes from that checkpoint (a worker only knows it uploaded one).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if checkpoint is not None and self.run_dir.is_dir():
            append_event(self.run_dir, EventType.CHECKPOINT, int(metrics[0]["step"]), path=checkpoint.path)
