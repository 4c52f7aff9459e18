"""What a run tells people and programs as it goes: ``[train]`` lines on stdout, their JSON records
in ``train_log.jsonl``, and run events in ``events.jsonl`` (rank 0 only), with rates and ETA."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from retrosearch.trainers.harness.events import EventType, append_event

LOG_FILE = "train_log.jsonl"


class RunLog:
    """The rank-0 worker's log and events in the run folder; on other ranks every call does nothing."""

    def __init__(self, run_dir: Path | None, rank: int, total_steps: int, batch_size: int) -> None:
        # The run folder is on the driver's node; on a cluster without shared storage rank 0 may not see it.
        self.active = rank == 0
        self.run_dir = run_dir if self.active and run_dir is not None and run_dir.is_dir() else None
        self.total_steps, self.batch_size = total_steps, batch_size
        self.started, self.first_step, self.tokens = time.perf_counter(), 0, 0

    def start(self, step: int, fingerprint: dict[str, Any], world_size: int, checkpoint: str | None) -> None:
        """The attempt begins at ``step`` (0, or the step of the ``checkpoint`` it resumed from)."""
        self.started, self.first_step, self.tokens = time.perf_counter(), step, 0
        self.event(
            EventType.STARTED, step, steps=self.total_steps, fingerprint=fingerprint, world_size=world_size
        )
        if step >= self.total_steps:
            self.line(f"checkpoint is at step {step} >= {self.total_steps} steps: nothing to train")
        elif step:
            self.line(f"resumed from the checkpoint at step {step}")
        if step:
            self.event(EventType.RESUMED, step, checkpoint=checkpoint)

    def count_tokens(self, tokens: int) -> None:
        """Add a step's encoder tokens to this attempt's total (for tokens/s)."""
        self.tokens += tokens

    def step(self, step: int, epoch: float, metrics: dict[str, float], terms: dict[str, float]) -> None:
        """The ``step`` line: losses, learning rate, gradient norm, rates, elapsed time and ETA."""
        elapsed = time.perf_counter() - self.started
        done = step - self.first_step
        rate = done * self.batch_size / elapsed if elapsed else 0.0
        token_rate = self.tokens / elapsed if elapsed else 0.0
        eta = elapsed / done * (self.total_steps - step) if done else 0.0
        parts = ", ".join(f"{n} {v:.4f}" for n, v in terms.items())
        record = {
            **metrics,
            "epoch": epoch,
            "examples_per_s": rate,
            "tokens_per_s": token_rate,
            "tokens": self.tokens,
            "elapsed_s": elapsed,
        }
        self.line(
            f"step {step}/{self.total_steps} epoch {epoch:.2f} "
            f"| loss {metrics['loss']:.4f} "
            f"({parts}) | lr {metrics['lr']:.2e} | grad {metrics['grad_norm']:.3f} | "
            f"{rate:.1f} ex/s {token_rate:.0f} tok/s | "
            f"elapsed {elapsed:.0f}s eta {eta:.0f}s",
            record,
        )
        # The event carries the step itself; its details are the rest of the record.
        self.event(EventType.PROGRESS, step, **{k: v for k, v in record.items() if k != "step"}, eta_s=eta)

    def checkpoint(self, step: int, final: bool) -> None:
        """The line saying rank 0 wrote the checkpoint of ``step`` (Ray records it as an event)."""
        self.line(f"checkpoint at step {step}" + (" (final, with export)" if final else ""))

    def failed(self, step: int, error: BaseException) -> None:
        """The loop raised ``error`` at ``step``."""
        self.event(EventType.FAILED, step, error=f"{type(error).__name__}: {error}")

    def line(self, text: str, record: dict[str, Any] | None = None) -> None:
        """One ``[train]`` line on stdout and its record in the run's log."""
        if not self.active:
            return
        # Not print(): Ray Train patches print() into its logger, and the line would show twice.
        sys.stdout.write(f"[train] {text}\n")
        sys.stdout.flush()
        if self.run_dir is not None:
            with (self.run_dir / LOG_FILE).open("a") as handle:
                handle.write(json.dumps(record or {"message": text}) + "\n")

    def event(self, type: EventType, step: int, **details: Any) -> None:
        """A run event in ``events.jsonl``."""
        if self.run_dir is not None:
            append_event(self.run_dir, type, step, **details)
