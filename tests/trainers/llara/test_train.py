"""LLaRA training in one process: pairs, the loss falling on real text, LoRA, and the export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.harness import RunInfo, TrainConfig, WorkerContext, WorkerLoop
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.llara.data import EBAE, EBAR, LM, document_pairs
from retrosearch.trainers.llara.method import LLaRAMethod

from tests.trainers.retromae.helpers import scifact_texts


def _method(model, corpus, **overrides) -> LLaRAMethod:
    return LLaRAMethod(LLaRAConfig(model=str(model), corpus=str(corpus), max_length=48, **overrides))


def _loop(method, tmp_path, steps, **train) -> WorkerLoop:
    config = TrainConfig(out=tmp_path / "out", steps=steps, batch_size=8, threads=1, **train)
    return WorkerLoop(method, config, method.load_examples(), WorkerContext.local("cpu"))


def test_pairs_are_consecutive_pieces_of_one_document():
    dot = np.asarray([0])
    ids = [5, 6, 0, 7, 8, 9, 0, 4, 4, 4, 0, 3]  # 0 ends a sentence
    assert document_pairs(ids, "sentences", 10, 2, dot) == [
        ([5, 6, 0], [7, 8, 9, 0]),
        ([7, 8, 9, 0], [4, 4, 4, 0]),
    ]
    # One block: cut at the sentence end nearest the middle.
    assert document_pairs(ids, "passages", 20, 2, dot) == [(ids[:7], ids[7:])]
    blocks = document_pairs(ids, "passages", 4, 1, dot)
    assert [a + b for a, b in blocks] == [ids[:3] + ids[3:7], ids[3:7] + ids[7:11], ids[7:11] + ids[11:]]


def test_loss_falls_on_real_text(tmp_path, llama_lm, small_corpus):
    method = _method(llama_lm, small_corpus, lm_weight=0.5)
    loop = _loop(method, tmp_path, steps=30, lr=3e-3, warmup_ratio=0.05)
    stats = [loop.train_step() for _ in range(30)]
    assert stats[0].terms.keys() == {EBAE, EBAR, LM}
    for name in (EBAE, EBAR, LM):
        first, last = stats[0].terms[name], np.mean([s.terms[name] for s in stats[-5:]])
        assert last < first - 0.5, (name, first, last)
    # Predicting the text itself is easier than predicting what follows it.
    assert np.mean([s.terms[EBAE] for s in stats[-5:]]) < np.mean([s.terms[EBAR] for s in stats[-5:]])


def test_lora_trains_only_the_adapters_and_exports_merged(tmp_path, llama_lm, small_corpus):
    method = _method(llama_lm, small_corpus, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    loop = _loop(method, tmp_path, steps=3, lr=1e-2, warmup_ratio=0.0)
    before = {n: p.detach().clone() for n, p in loop.raw_model.named_parameters()}
    trainable = {n for n, p in loop.raw_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for _ in range(3):
        loop.train_step()
    changed = {n for n, p in loop.raw_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable
    out = tmp_path / "export"
    method.export(loop.raw_model, out, RunInfo(3, 3, 1, 8, 42))
    assert not (out / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(llama_lm).state_dict()
    assert any(not torch.equal(merged[k], base[k]) for k in base if "proj" in k)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_export_encodes_as_the_model_embeds(family, tmp_path, llama_lm, gpt2_lm, small_corpus):
    method = _method(llama_lm if family == "llama" else gpt2_lm, small_corpus)
    loop = _loop(method, tmp_path, steps=2, lr=1e-3)
    for _ in range(2):
        loop.train_step()
    model = loop.raw_model.eval()
    out = tmp_path / "export"
    method.export(model, out, RunInfo(2, 2, 1, 8, 42))
    encoder = Encoder.load(EncoderSettings(model=str(out), device="cpu", show_progress=False))
    assert encoder.spec.method == "llara" and encoder.spec.pooling == "last"
    texts = [t[:100] for t in scifact_texts(4)]  # within max_length: the collator cuts longer texts
    ids = method.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert max(len(i) for i in ids) <= method.config.max_length
    collated = method.collate([(np.asarray(i), np.asarray(i)) for i in ids], [0] * len(ids))
    batch = collated.inputs
    # tokens/s counts what the LM reads: every text and prompt token, no padding
    assert sum(map(len, ids)) < collated.input_tokens() < batch["input_ids"].numel()
    with torch.no_grad():
        passages, queries = model.embed(
            batch["input_ids"],
            batch["position_ids"],
            batch["visible"],
            batch["self_index"],
            batch["next_index"],
        )
    normalize = lambda x: torch.nn.functional.normalize(x, dim=-1).numpy()
    got_passages = encoder.encode_documents([Document(str(i), t) for i, t in enumerate(texts)])
    np.testing.assert_allclose(got_passages, normalize(passages), atol=2e-5)
    np.testing.assert_allclose(encoder.encode_queries(texts), normalize(queries), atol=2e-5)
    # Over-long texts lose their start, not the prompt whose last token is the embedding.
    assert encoder.tokenizer.truncation_side == "left"
