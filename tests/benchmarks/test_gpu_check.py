"""scripts/gpu-check.sh without a GPU (it checks itself and lists its steps), and the check's own logic:
the step plan, per-step timeouts, skipped steps and the Markdown report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from retrosearch.benchmarks import gpu_check
from tests.conftest import REPO


def test_without_a_gpu_the_script_checks_itself_lists_its_steps_and_exits_0(tmp_path: Path):
    # CUDA_VISIBLE_DEVICES="" hides any GPU from torch, so this is the no-GPU path on every machine.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    command = ["bash", str(REPO / "scripts" / "gpu-check.sh"), "--data", str(tmp_path / "beir"),
               "--out", str(tmp_path / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "gpu-check: syntax and options checked" in lines
    assert "no GPU: torch sees no CUDA device; checking the options and listing the steps instead" in lines
    listed = [line.strip() for line in lines if line.strip()[:2] in {f"{n}." for n in range(1, 10)}]
    assert [line.split()[1] for line in listed] == list(gpu_check.STEP_NAMES)
    by_name = dict(zip(gpu_check.STEP_NAMES, listed))
    assert "-m pytest" in by_name["tests"] and "-m gpu tests/gpu" in by_name["tests"]
    assert "bench ingest" in by_name["ingest-fp16"] and "--dtype float16" in by_name["ingest-fp16"]
    assert "--gpus-per-worker 1" in by_name["ingest-bf16"]
    assert "--dtype bfloat16" in by_name["ingest-bf16"]
    assert "bench serve" in by_name["serve"] and "bench train" in by_name["train"]
    assert "--device cuda" in by_name["train"] and "--faiss-search" in by_name["faiss-gpu"]
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_the_script_refuses_bad_options_in_one_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--budget-s", "5"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "--budget-s must be at least 60" in proc.stderr


def test_the_commands_it_runs_parse_with_the_current_options(tmp_path: Path):
    """Every bench command of the plan is accepted by the CLI (checked with --help appended)."""
    from typer.testing import CliRunner

    from retrosearch.cli import app

    args = gpu_check.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "out")])
    for step in gpu_check.plan(args, faiss_has_gpu=True):
        if step.argv[1:3] != ["-m", "retrosearch.cli"]:
            continue
        options = [a for a in step.argv[3:] if a.startswith("--")]
        result = CliRunner().invoke(app, [*step.argv[3:5], "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        for option in options:
            assert option in result.output, f"{step.name}: {option} is not an option of {step.argv[3:5]}"


def test_plan_leaves_faiss_out_on_the_cpu_build_and_honours_only(tmp_path: Path):
    args = gpu_check.parse_args(["--data", str(tmp_path), "--only", "tests", "faiss-gpu"])
    tests, faiss_step = gpu_check.plan(args, faiss_has_gpu=False)
    assert tests.argv[-2:] == ["-k", "not faiss"] and "faiss-cpu" in tests.note
    assert faiss_step.note == "faiss-cpu build: skipped"
    record = gpu_check.run_step(faiss_step, 10, tmp_path / "faiss.log")
    assert record["status"] == "skipped" and not (tmp_path / "faiss.log").exists()
    with_gpu = gpu_check.plan(args, faiss_has_gpu=True)
    assert "not faiss" not in with_gpu[0].argv and with_gpu[1].note == ""


def _ends(pid: int, within_s: float = 30) -> bool:
    """Whether process ``pid`` is gone (or a zombie nobody reaps yet) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_step_past_its_timeout_is_killed_and_recorded(tmp_path: Path):
    result = tmp_path / "figures.json"
    # The step starts a server-like child in a session of its own (as bench serve does), then hangs.
    pid_file = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time, pathlib; child = subprocess.Popen([sys.executable, '-c', "
              f"'import time; time.sleep(600)'], start_new_session=True); "
              f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid)); time.sleep(600)")
    step = gpu_check.Step("slow", 60, [sys.executable, "-c", script])
    record = gpu_check.run_step(step, 15, tmp_path / "slow.log")
    assert record["status"] == "timeout" and record["returncode"] != 0
    assert pid_file.exists(), "the step did not start its child within its 15 s"
    assert _ends(int(pid_file.read_text())), "the step's child outlived the step's timeout"
    write = f"open({str(result)!r}, 'w').write('{{\"x\": 1}}')"
    quick = gpu_check.Step("quick", 60, [sys.executable, "-c", write], result=result)
    record = gpu_check.run_step(quick, 60, tmp_path / "quick.log")
    assert record["status"] == "ok" and record["returncode"] == 0 and record["result"] == {"x": 1}


def test_markdown_report_has_one_row_per_step():
    report = {
        "finished": "2026-01-01 00:00 UTC", "budget_s": 450, "seconds": 123.4,
        "machine": {"gpus": ["NVIDIA H100"], "nvidia_smi": "NVIDIA H100, 81559 MiB, 550.00", "cpus": 16,
                    "torch": "2.13.0", "cuda": "12.8", "faiss_gpus": 0},
        "steps": [
            {"name": "tests", "status": "ok", "seconds": 50.0,
             "log_tail": "4 passed, 2 deselected in 40.1s\n"},
            {"name": "train", "status": "ok", "seconds": 60.0, "result": {"results": {
                "a_hand_written": {"tokens_per_s": 1000.0}, "b_harness": {"tokens_per_s": 990.0}}}},
            {"name": "faiss-gpu", "status": "skipped", "seconds": 0.0, "note": "faiss-cpu build: skipped"},
        ],
    }
    text = gpu_check.markdown(report)
    assert "| tests | ok | 50 | 4 passed, 2 deselected in 40.1s |" in text
    assert "| train | ok | 60 | a_hand_written 1000 tokens/s; b_harness 990 tokens/s |" in text
    assert "| faiss-gpu | skipped | 0 | faiss-cpu build: skipped |" in text
    assert "NVIDIA H100" in text and json.dumps(report)  # the report is plain JSON


def test_bad_options_fail_before_anything_runs(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.parse_args(["--only", "nothing"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
