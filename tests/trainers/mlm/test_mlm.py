"""MLM pretraining in one process: RetroMAE's encoder masking, the loss falling on real text, the export."""

from __future__ import annotations

import json

import numpy as np
import torch

from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.harness import RunInfo, TrainConfig, WorkerContext, WorkerLoop
from retrosearch.trainers.harness.data import read_corpora
from retrosearch.trainers.mlm.config import MLMConfig
from retrosearch.trainers.mlm.method import MLMMethod
from retrosearch.trainers.retromae.config import RetroMAEConfig
from retrosearch.trainers.retromae.data import ENCODER, RetroMAECollator
from retrosearch.trainers.retromae.mask import IGNORE
from tests.trainers.retromae.helpers import scifact_blocks


def _method(model, corpus, **overrides) -> MLMMethod:
    return MLMMethod(MLMConfig(model=str(model), corpus=corpus, max_length=64, **overrides))


def test_the_encoder_is_masked_as_retromaes(tiny_bert_encoder, small_corpus):
    """Same ratio, same seed: the MLM example is RetroMAE's encoder input (one masking code)."""
    mlm = _method(tiny_bert_encoder, str(small_corpus), mask_ratio=0.3)
    config = RetroMAEConfig(model=str(tiny_bert_encoder), corpus=str(small_corpus), max_length=64,
                            encoder_mask_ratio=0.3)
    retromae = RetroMAECollator(mlm.tokenizer, config)
    for seed, block in enumerate(scifact_blocks(mlm.tokenizer, 4, 60)):
        ours, theirs = mlm.build_collator().example(block, seed), retromae.example(block, seed)
        assert torch.equal(ours["input_ids"], theirs["encoder_input_ids"])
        assert torch.equal(ours["labels"], theirs["encoder_labels"])


def test_about_fifteen_percent_of_the_tokens_are_predicted(tiny_bert_encoder, small_corpus):
    method = _method(tiny_bert_encoder, str(small_corpus), masking="token")
    blocks = method.load_examples()
    batch = method.collate([blocks[i] for i in range(32)], list(range(32)))
    ordinary = int(batch.inputs["attention_mask"].sum()) - 2 * 32  # [CLS] and [SEP] are never masked
    predicted = batch.counts[ENCODER]
    assert predicted == int((batch.inputs["labels"] != IGNORE).sum())
    assert 0.13 < predicted / ordinary < 0.17


def test_loss_falls_on_real_text_and_the_export_encodes(tmp_path, tiny_bert_encoder, small_corpus):
    method = _method(tiny_bert_encoder, [str(small_corpus)])
    config = TrainConfig(out=tmp_path / "out", steps=30, batch_size=8, threads=1, lr=3e-3, warmup_ratio=0.05)
    loop = WorkerLoop(method, config, method.load_examples(), WorkerContext.local("cpu"))
    stats = [loop.train_step() for _ in range(30)]
    assert stats[0].terms.keys() == {ENCODER}
    first, last = stats[0].loss, np.mean([s.loss for s in stats[-5:]])
    assert last < first - 0.5, (first, last)  # from ln(vocabulary): the head learns the frequent words

    method.export(loop.raw_model, tmp_path / "out", RunInfo(30, 30, 1, 8, 42, stats[-1].metrics()))
    spec = json.loads((tmp_path / "out" / "retrosearch.json").read_text())
    assert spec["pooling"] == "cls" and spec["method"] == "mlm" and spec["provenance"]["mask_ratio"] == 0.15
    encoder = Encoder.load(EncoderSettings(model=str(tmp_path / "out"), device="cpu"))
    vectors = encoder.encode_queries(["a b", "c d"])
    assert vectors.shape[0] == 2 and not np.allclose(vectors[0], vectors[1])


def test_several_corpora_are_read_in_turn(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps({"text": f"a{i}"}) + "\n" for i in range(3)))
    second.write_text(json.dumps({"text": "b0"}) + "\n")
    assert list(read_corpora([first, second], title_field=None)) == ["a0", "b0", "a1", "a2"]
