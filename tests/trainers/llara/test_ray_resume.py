"""LLaRA under a real local Ray: a finished run, re-run with more steps, resumes from its checkpoint
and continues exactly as an uninterrupted run would have."""

from __future__ import annotations

import json

import pytest
from retrosearch.trainers.harness import TrainConfig, WorkerContext, WorkerLoop, fit, run_dir
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.llara.method import LLaRAMethod


def test_rerun_resumes_from_the_checkpoint(ray_local, tmp_path, llama_lm, small_corpus):
    method = LLaRAMethod(
        LLaRAConfig(model=str(llama_lm), corpus=str(small_corpus), max_length=32, max_pairs=64)
    )
    options = dict(
        batch_size=4, lr=3e-3, warmup_ratio=0.0, scheduler="constant", log_every=1, checkpoint_every=2
    )
    out = tmp_path / "model"
    fit(method, TrainConfig(out=out, steps=3, **options))
    assert (out / "retrosearch.json").exists()
    resumed = fit(method, TrainConfig(out=out, steps=5, **options))
    assert json.loads((out / "retrosearch.json").read_text())["provenance"]["steps"] == 5

    records = [json.loads(line) for line in (resumed.run_dir / "train_log.jsonl").read_text().splitlines()]
    messages = [r.get("message", "") for r in records]
    assert any("resumed from the checkpoint at step 3" in m for m in messages)
    logged = {r["step"]: r["loss"] for r in records if "loss" in r}
    assert sorted(logged) == [1, 2, 3, 4, 5]

    # The same five steps in one uninterrupted process.
    config = TrainConfig(out=tmp_path / "ref", steps=5, threads=1, **options)
    loop = WorkerLoop(method, config, method.load_examples(), WorkerContext.local("cpu"))
    reference = [loop.train_step().loss for _ in range(5)]
    for step in (4, 5):
        assert logged[step] == pytest.approx(reference[step - 1], rel=1e-4), step
    assert run_dir(method, config).name == "llara"
