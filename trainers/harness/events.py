"""A training run's events: what happened, machine-readable, one JSON object a line in ``events.jsonl``.

The run folder (``run_dir``) holds them beside Ray Train's checkpoints. Who writes what:

- the rank-0 worker: ``started`` (config fingerprint, first step), ``resumed`` (step, checkpoint),
  ``progress`` (every logged step: metrics, rate, ETA), ``failed`` (an error in the loop);
- Ray Train's controller, on the driver's node, right after it registered a checkpoint:
  ``checkpoint`` (step, path); a rerun of the run resumes from the last one (see
  :mod:`~retrosearch.trainers.harness.ray_report`);
- the driver: ``finished`` (final metrics, the output folder) and ``failed`` (the run gave up).

Every event is one ``write`` to a file opened for appending, so writers never interleave inside a
line and a reader sees whole lines (a line cut short by a crash is skipped). A resumed run appends.
This module imports nothing heavy: the pipeline reads runs without torch or Ray.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


class EventType(str, Enum):
    """The kinds of run events."""

    STARTED = "started"
    RESUMED = "resumed"
    PROGRESS = "progress"
    CHECKPOINT = "checkpoint"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run: its type, the optimiser step, the wall-clock time, details."""

    type: EventType
    step: int
    time: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The event as one JSON line (without the newline)."""
        return json.dumps(
            {"type": self.type.value, "step": self.step, "time": self.time, "details": self.details},
            default=str,
        )

    @classmethod
    def from_json(cls, line: str) -> "Event":
        """Parse a line written by :meth:`to_json` (ValueError/KeyError/TypeError when it is not one)."""
        data = json.loads(line)
        return cls(EventType(data["type"]), int(data["step"]), float(data["time"]), dict(data["details"]))


def append_event(run_dir: Path, type: EventType, step: int, **details: Any) -> Event:
    """Append one event to ``run_dir/events.jsonl`` (the folder must exist) and return it."""
    event = Event(type, step, time.time(), details)
    data = (event.to_json() + "\n").encode()
    # One write() on an O_APPEND descriptor: concurrent writers land whole lines one after another.
    fd = os.open(run_dir / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return event


def read_events(run_dir: Path) -> list[Event]:
    """Every whole event of the run in ``run_dir``, oldest first (none when it has not started)."""
    try:
        text = (run_dir / EVENTS_FILE).read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.split("\n")[:-1]:  # the part after the last newline is a line still being written
        try:
            events.append(Event.from_json(line))
        except (ValueError, KeyError, TypeError):  # a line cut short by a crash
            continue
    return events


@dataclass(frozen=True)
class RunProgress:
    """How far a run got, from its events."""

    state: str  # "new" (no events), "running" (or killed), "finished", "failed"
    step: int  # the last step trained (logged) or started from
    total_steps: int | None  # the run's optimiser steps, once started
    checkpoint_step: int | None  # the step of the last registered checkpoint: a rerun resumes there
    checkpoint: str | None  # that checkpoint's path
    resumed_from: int | None  # the step the latest attempt resumed from (None: it started at step 0)
    metrics: dict[str, Any]  # the latest attempt's last progress metrics, updated by the final ones
    out: str | None  # the output folder, once finished
    error: str | None  # why it failed, when it did

    @property
    def eta_s(self) -> float | None:
        """Seconds the latest attempt expected still to need, when it logged a step."""
        value = self.metrics.get("eta_s")
        return None if value is None or self.state != "running" else float(value)


def progress(run_dir: Path) -> RunProgress:
    """How far the run in ``run_dir`` got."""
    return summarise(read_events(run_dir))


def summarise(events: Sequence[Event]) -> RunProgress:
    """What ``events`` (a run's, or the tail of them since some point) say about its progress."""
    state, step, total = ("new", 0, None) if not events else ("running", 0, None)
    checkpoint_step = checkpoint = resumed_from = out = error = None
    metrics: dict[str, Any] = {}
    for event in events:
        if event.type == EventType.STARTED:  # a new attempt: what the last one logged is history
            state, step, total, resumed_from = "running", event.step, event.details.get("steps"), None
            error = out = None
            metrics = {}
        elif event.type == EventType.RESUMED:
            resumed_from, step = event.step, event.step
        elif event.type == EventType.PROGRESS:
            step, metrics = event.step, dict(event.details)
        elif event.type == EventType.CHECKPOINT:
            checkpoint_step, checkpoint = event.step, event.details.get("path")
        elif event.type == EventType.FINISHED:
            state, step, out = "finished", event.step, event.details.get("out")
            metrics = {**metrics, **(event.details.get("metrics") or {})}
        elif event.type == EventType.FAILED:
            state, error = "failed", event.details.get("error")
    return RunProgress(state, step, total, checkpoint_step, checkpoint, resumed_from, metrics, out, error)
