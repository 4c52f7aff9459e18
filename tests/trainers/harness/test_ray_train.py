"""The harness under a real local Ray: 2 workers reproduce 1 worker, and a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from ray import cloudpickle
from typer.testing import CliRunner

from retrosearch.core.encoder import Encoder
from retrosearch.trainers.harness import TrainConfig, WorkerContext, WorkerLoop, fit, run_dir
from retrosearch.trainers.harness.events import EventType, progress, read_events
from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod

# The loop function and the method subclass below live in this test module, which Ray workers
# cannot import: ship them by value (Ray pickles with its own copy of cloudpickle).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _first_step_gradients(loop_config: dict) -> None:
    loop = WorkerLoop(
        loop_config["method"], loop_config["config"], loop_config["examples"], WorkerContext.from_ray()
    )
    stats = loop.backward(step=0)
    if loop.ctx.rank == 0:  # DDP has averaged the gradients: rank 0 holds the global ones
        grads = {n: p.grad.detach().cpu() for n, p in loop.raw_model.named_parameters() if p.grad is not None}
        torch.save({"grads": grads, "terms": stats.terms}, loop_config["dump"])


def test_two_workers_give_the_gradients_of_one(ray_local, tmp_path, tiny_bert_encoder, small_corpus):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    method = RetroMAEMethod(
        RetroMAEConfig(model=str(tiny_bert_encoder), corpus=str(small_corpus), max_length=64, dupmae=True)
    )
    examples = method.load_examples()
    single = WorkerLoop(
        method, TrainConfig(out=tmp_path / "a", batch_size=8, threads=1), examples, WorkerContext.local("cpu")
    )
    reference = single.backward(step=0)
    expected = {n: p.grad for n, p in single.raw_model.named_parameters() if p.grad is not None}

    dump = tmp_path / "grads.pt"
    TorchTrainer(
        _first_step_gradients,
        train_loop_config={
            "method": method,
            "config": TrainConfig(out=tmp_path / "b", batch_size=8, workers=2),
            "examples": examples,
            "dump": dump,
        },
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="grads", storage_path=str(tmp_path / "ray")),
    ).fit()
    got = torch.load(dump)
    for name, value in reference.terms.items():
        assert got["terms"][name] == pytest.approx(value, rel=1e-6)
    assert got["grads"].keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


class KilledAtStep(RetroMAEMethod):
    """RetroMAE whose worker process is SIGKILLed when it prepares step ``kill_at`` (once).

    It first waits for the run's ``checkpoint`` event: the controller registers a reported
    checkpoint asynchronously, and on a busy machine a worker killed two steps later could
    otherwise die before the checkpoint counts.
    """

    def __init__(self, config: RetroMAEConfig, marker: Path, kill_at: int, run_folder: Path) -> None:
        super().__init__(config)
        self.marker, self.kill_at, self.run_folder, self.calls = marker, kill_at, run_folder, 0

    def collate(self, examples, seeds):
        self.calls += 1
        if self.calls == self.kill_at and not self.marker.exists():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and progress(self.run_folder).checkpoint_step is None:
                time.sleep(0.1)
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().collate(examples, seeds)


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.isolated
def test_killed_run_resumes_from_its_last_checkpoint(ray_local, tmp_path, tiny_bert_encoder, small_corpus):
    from retrosearch.cli import app

    out = tmp_path / "model"
    options = {"steps": 5, "batch_size": 4, "checkpoint_every": 2, "log_every": 1}
    config = RetroMAEConfig(model=str(tiny_bert_encoder), corpus=str(small_corpus), max_length=64)
    folder = run_dir(RetroMAEMethod(config), TrainConfig(out=out))
    killed = KilledAtStep(config, tmp_path / "killed", kill_at=4, run_folder=folder)
    with pytest.raises(Exception):
        fit(killed, TrainConfig(out=out, **options))
    assert (tmp_path / "killed").exists() and not out.exists()
    log = folder / "train_log.jsonl"
    before = read_events(folder)
    assert progress(folder).state == "failed" and progress(folder).checkpoint_step == 2
    first_run = {r["step"]: r for r in _log(log) if "step" in r}
    assert sorted(first_run) == [1, 2, 3]

    # The user's way back: the same command again.
    argv = ["train", "retromae", "--model", str(tiny_bert_encoder), "--corpus", str(small_corpus)]
    argv += ["--out", str(out), "--max-length", "64"] + [
        f"--{k.replace('_', '-')}={v}" for k, v in options.items()
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    records = _log(log)
    resumed_at = next(i for i, r in enumerate(records) if r.get("message", "").startswith("resumed"))
    assert records[resumed_at]["message"] == "resumed from the checkpoint at step 2"
    second_run = {r["step"]: r for r in records[resumed_at:] if "step" in r}
    assert sorted(second_run) == [3, 4, 5]
    # Step 3 again: same weights, data, masks and learning rate as before the kill.
    for key in ("loss", "loss/encoder_mlm", "loss/decoder", "lr"):
        assert second_run[3][key] == pytest.approx(first_run[3][key], rel=1e-6), key

    # The events say the same: resumed at step 2 from the checkpoint registered at step 2, then on to 5.
    checkpoint = next(e for e in before if e.type == EventType.CHECKPOINT)
    rerun = read_events(folder)[len(before):]
    assert [(e.type, e.step) for e in rerun[:2]] == [(EventType.STARTED, 2), (EventType.RESUMED, 2)]
    assert rerun[1].details["checkpoint"] == checkpoint.details["path"]
    assert [e.step for e in rerun if e.type == EventType.PROGRESS] == [3, 4, 5]
    assert rerun[-1].type == EventType.FINISHED and progress(folder).resumed_from == 2

    encoder = Encoder.load(str(out))
    assert encoder.spec.pooling == "cls" and encoder.spec.provenance["steps"] == 5
    assert (out / "decoder" / "model.safetensors").is_file()


def test_more_workers_than_local_cpus_fail_at_once(ray_local, tmp_path, tiny_bert_encoder, small_corpus):
    method = RetroMAEMethod(RetroMAEConfig(model=str(tiny_bert_encoder), corpus=str(small_corpus)))
    with pytest.raises(ValueError, match="4 workers need 4 CPUs but the local Ray has 2"):
        fit(method, TrainConfig(out=tmp_path / "out", workers=4, batch_size=8))
