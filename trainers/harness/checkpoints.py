"""Checkpoint folders: the model's weights and the optimiser state of one step, and the check that
a checkpoint belongs to the run that resumes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODEL_FILE = "model.pt"
STATE_FILE = "train_state.pt"
EXPORT_DIR = "export"  # the method's export, in the final checkpoint only


@dataclass
class TrainingState:
    """What a step leaves behind besides the weights: optimiser, schedule, loss scale, step."""

    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler
    scaler: torch.amp.GradScaler


def save_checkpoint(
    folder: Path, model: nn.Module, state: TrainingState, step: int, fingerprint: dict[str, Any]
) -> None:
    """Write ``model``'s weights and the optimiser state of ``step`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / MODEL_FILE)
    saved = {
        "step": step,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "fingerprint": fingerprint,
    }
    torch.save(saved, folder / STATE_FILE)


def load_checkpoint(folder: Path, model: nn.Module, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Load ``folder``'s weights into ``model``; returns the saved state for :func:`restore_state`."""
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    check_fingerprint(state["fingerprint"], fingerprint)
    model.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
    return state


def restore_state(saved: dict[str, Any], state: TrainingState) -> int:
    """Put the saved optimiser, schedule and loss scale back; returns the step they belong to."""
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.scaler.load_state_dict(saved["scaler"])
    return int(saved["step"])


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with different method settings (it would mix two runs)."""
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(
            f"the checkpoint in this run folder was made with other settings ({detail}); "
            "use another --out/--storage or --name to start a new run"
        )
