"""Kill a pipeline mid-training, run it again: the stage resumes from its last checkpoint, not step 0."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from retrosearch.pipeline.config import parse_config
from retrosearch.pipeline.manifest import read_manifest
from retrosearch.pipeline.runner import plan, run
from retrosearch.trainers.harness.events import EventType, progress, read_events
from tests.pipeline.conftest import tiny_pipeline, write_pipeline

STEPS, EVERY = 12, 3


def _pretrain_only(collection: Path, model: Path, work: Path) -> dict:
    data = tiny_pipeline(collection, model, work)
    data["stages"]["pretrain"].update(steps=STEPS, checkpoint_every=EVERY)
    for name in ("mine", "finetune", "evaluate", "ingest"):
        data["stages"][name] = {"enabled": False}
    return data


def _kill_after_first_checkpoint(command: list[str], run_dir: Path, timeout_s: float = 240) -> None:
    """Start the pipeline; SIGKILL its process group once the run's events show a registered checkpoint."""
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if progress(run_dir).checkpoint_step is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the pipeline ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_killed_training_resumes_from_its_checkpoint(tmp_path, train_test_collection, tiny_encoder, ray_local):
    data = _pretrain_only(train_test_collection, tiny_encoder, tmp_path / "work")
    path = write_pipeline(tmp_path / "resume.yaml", data)
    run_dir = tmp_path / "work" / "pretrain" / "train" / "retromae"
    _kill_after_first_checkpoint([sys.executable, "-m", "retrosearch.cli", "pipeline", "run", str(path)], run_dir)

    manifest = read_manifest(tmp_path / "work" / "pretrain")
    assert manifest is not None and manifest.status == "running"
    assert not (tmp_path / "work" / "pretrain" / "model").exists()
    before = read_events(run_dir)
    saved_step = progress(run_dir).checkpoint_step
    assert saved_step is not None and 0 < saved_step < STEPS
    decision = plan(parse_config(copy.deepcopy(data)))[0]
    assert decision.action == "resume"
    assert decision.reason == f"interrupted (checkpoint at step {saved_step}): resumes from the checkpoint"

    lines: list[str] = []
    record = run(parse_config(copy.deepcopy(data)), lines.append)[0]
    assert record.status == "resumed" and record.figures.get("resumed_from_step") == saved_step, lines
    assert record.figures["tokens_per_s"] > 0 and record.figures["train_s"] > 0
    resumed = saved_step
    model = tmp_path / "work" / "pretrain" / "model"

    # The rerun's events from its start: the killed run's worker may have logged a step or two more
    # before it noticed that its driver was gone.
    events = read_events(run_dir)
    rerun = events[max(i for i, e in enumerate(events) if e.type == EventType.STARTED):]
    assert len(events) > len(before) and [(e.type, e.step) for e in rerun[:2]] == [
        (EventType.STARTED, resumed), (EventType.RESUMED, resumed)
    ]
    steps_after = [e.step for e in rerun if e.type == EventType.PROGRESS]
    assert steps_after[0] == resumed + 1 and steps_after[-1] == STEPS  # not step 1 again
    assert rerun[-1].type == EventType.FINISHED and rerun[-1].details["out"] == str(model.resolve())
    assert json.loads((model / "retrosearch.json").read_text())["provenance"]["steps"] == STEPS
    assert read_manifest(tmp_path / "work" / "pretrain").status == "done"
