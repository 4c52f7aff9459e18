"""The worker loop in one process: RetroMAE learns on real text, and accumulation changes no gradient."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from retrosearch.trainers.harness import TrainConfig, WorkerContext, WorkerLoop
from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod


def _method(model, corpus, **overrides) -> RetroMAEMethod:
    return RetroMAEMethod(RetroMAEConfig(model=str(model), corpus=str(corpus), max_length=64, **overrides))


def _grads(loop: WorkerLoop) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in loop.raw_model.named_parameters() if p.grad is not None}


def test_loss_falls_on_real_text(tmp_path, tiny_roberta, small_corpus):
    # RoBERTa with an 800-piece BPE vocabulary: the softmax is cheap, so 40 steps take seconds.
    method = _method(tiny_roberta, small_corpus)
    examples = method.load_examples()
    config = TrainConfig(out=tmp_path / "out", steps=40, batch_size=8, lr=3e-3, warmup_ratio=0.05, threads=1)
    loop = WorkerLoop(method, config, examples, WorkerContext.local("cpu"))
    losses = [loop.train_step() for _ in range(config.steps)]
    first = losses[0].terms
    last = {name: sum(s.terms[name] for s in losses[-5:]) / 5 for name in first}
    for name in first:
        assert last[name] < first[name] - 0.4, (name, first[name], last[name])
    assert losses[-1].step == 40 and loop.step == 40
    assert losses[0].lr < losses[2].lr, "warm-up raises the learning rate"


def test_accumulation_gives_the_same_gradients(tmp_path, tiny_bert_encoder, small_corpus):
    method = _method(tiny_bert_encoder, small_corpus, dupmae=True)
    examples = method.load_examples()
    grads, stats = [], []
    for accum in (1, 4):
        config = TrainConfig(out=tmp_path / "out", steps=10, batch_size=8, grad_accum=accum, threads=1)
        loop = WorkerLoop(method, config, examples, WorkerContext.local("cpu"))
        stats.append(loop.backward(step=3))
        grads.append(_grads(loop))
    assert stats[0].terms.keys() == {"encoder_mlm", "decoder", "bow"}
    for name in stats[0].terms:
        assert stats[1].terms[name] == pytest.approx(stats[0].terms[name], rel=1e-6)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_batch_must_split_evenly(tmp_path):
    with pytest.raises(ValidationError, match="multiple of workers x grad_accum"):
        TrainConfig(out=tmp_path, batch_size=6, workers=4)
