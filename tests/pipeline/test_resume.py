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
from tests.pipeline.conftest import tiny_pipeline, write_pipeline

STEPS, EVERY = 12, 3


def _pretrain_only(collection: Path, model: Path, work: Path) -> dict:
    data = tiny_pipeline(collection, model, work)
    data["stages"]["pretrain"].update(steps=STEPS, checkpoint_every=EVERY)
    for name in ("mine", "finetune", "evaluate", "ingest"):
        data["stages"][name] = {"enabled": False}
    return data


def _kill_after_first_checkpoint(command: list[str], run_dir: Path, timeout_s: float = 240) -> None:
    """Start the pipeline, SIGKILL its whole process group once Ray Train has registered a checkpoint."""
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (run_dir / "checkpoint_manager_snapshot.json").is_file():
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
    saved = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    saved_step = saved["latest_checkpoint_result"]["metrics"]["step"]
    assert 0 < saved_step < STEPS
    decision = plan(parse_config(copy.deepcopy(data)))[0]
    assert decision.action == "resume"
    assert decision.reason == f"interrupted (checkpoint at step {saved_step}): resumes from the checkpoint"

    lines: list[str] = []
    record = run(parse_config(copy.deepcopy(data)), lines.append)[0]
    assert record.status == "resumed" and record.figures.get("resumed_from_step") == saved_step, lines
    resumed = saved_step

    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    start = next(i for i, r in enumerate(log) if r.get("message", "").startswith("resumed from the checkpoint"))
    steps_after = [r["step"] for r in log[start:] if "step" in r]
    assert steps_after[0] == resumed + 1 and steps_after[-1] == STEPS  # not step 1 again
    model = tmp_path / "work" / "pretrain" / "model"
    assert json.loads((model / "retrosearch.json").read_text())["provenance"]["steps"] == STEPS
    assert read_manifest(tmp_path / "work" / "pretrain").status == "done"
