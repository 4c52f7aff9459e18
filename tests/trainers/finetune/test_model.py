"""The trainable encoder: batches as the runtime formats them, LoRA on decoders, export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.finetune.config import FinetuneConfig, LoraConfig
from retrosearch.trainers.finetune.data import Example, Passage
from retrosearch.trainers.finetune.export import export_checkpoint
from retrosearch.trainers.finetune.loss import InfoNCELoss
from retrosearch.trainers.finetune.model import ContrastiveCollator, ContrastiveModel, load_trainable_encoder

EXAMPLES = [
    Example("gene expression in cancer", [Passage("gene expression levels in tumor cells", "genes"), Passage("wing flow")], [1]),
    Example("heat transfer boundary layer", [Passage("heat flux at the boundary layer surface"), Passage("blood")], [2]),
    Example("brain activity in mice", [Passage("mice brain activity increased"), Passage("mach number theory")], [3]),
]


def _config(model: Path, **fields) -> FinetuneConfig:
    return FinetuneConfig(model=str(model), train_file=Path("unused.jsonl"), passage_max_length=32, query_max_length=16, **fields)


def _step(model: ContrastiveModel, batch: dict[str, torch.Tensor], lr: float = 1e-2) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    out = model(**batch)
    out.loss.backward()
    optimizer.step()
    return out.loss.item()


def test_collator_formats_and_pads_like_the_runtime(word_llama: Path) -> None:
    trainable = load_trainable_encoder(_config(word_llama, lora=False, query_template="query: {text}{eos}"))
    collator = ContrastiveCollator(trainable.tokenizer, trainable.spec, 16, 32)
    batch = collator(EXAMPLES)
    assert batch["passage_input_ids"].shape[0] == 6 and batch["passage_keys"].shape == (6,)
    eos = trainable.tokenizer.eos_token_id
    # Decoder spec: left padding, so every row ends with the end-of-sequence token last-token pooling reads.
    assert (batch["query_input_ids"][:, -1] == eos).all() and (batch["passage_input_ids"][:, -1] == eos).all()
    assert (batch["passage_attention_mask"][:, -1] == 1).all()
    runtime_ids = trainable.tokenizer(collator.formatter.query(EXAMPLES[0].query))["input_ids"]
    row = batch["query_input_ids"][0][batch["query_attention_mask"][0].bool()].tolist()
    assert row == runtime_ids and collator.formatter.query("x").startswith("query: x")


def test_lora_trains_only_adapter_weights(word_llama: Path) -> None:
    trainable = load_trainable_encoder(
        _config(word_llama, gradient_checkpointing=True, lora_config=LoraConfig(r=4, alpha=8, dropout=0.0))
    )
    assert trainable.lora  # the default for a last-token (decoder) encoder
    model = ContrastiveModel(trainable.model, InfoNCELoss(temperature=0.05))
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable_names and all("lora_" in n for n in trainable_names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    _step(model, ContrastiveCollator(trainable.tokenizer, trainable.spec, 16, 32)(EXAMPLES))
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and changed <= trainable_names
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


def test_export_merges_lora_and_encodes_as_trained(word_llama: Path, tmp_path: Path) -> None:
    config = _config(word_llama, lora_config=LoraConfig(r=4, alpha=8, dropout=0.0))
    trainable = load_trainable_encoder(config)
    model = ContrastiveModel(trainable.model, InfoNCELoss(temperature=0.05))
    collator = ContrastiveCollator(trainable.tokenizer, trainable.spec, 16, 32)
    for _ in range(2):
        _step(model, collator(EXAMPLES))
    model.eval()
    texts = [collator.formatter.query(e.query) for e in EXAMPLES]
    with torch.no_grad():
        encoded = trainable.tokenizer(texts, padding=True, return_tensors="pt")
        trained = model.encoder(encoded["input_ids"], encoded["attention_mask"])
    out = export_checkpoint(
        model.encoder, trainable.tokenizer, tmp_path / "ckpt", str(word_llama), trainable.base_path, trainable.spec,
        {"config": config.model_dump(mode="json")},
    )
    assert not list(out.glob("adapter_*")), "adapters must be merged, not saved beside the weights"
    spec = json.loads((out / "retrosearch.json").read_text())
    assert spec["method"] == "finetune" and spec["provenance"]["base_model"] == str(word_llama)
    assert spec["pooling"] == "last" and spec["padding_side"] == "left"
    loaded = Encoder.load(EncoderSettings(model=str(out), device="cpu", show_progress=False, max_length=32))
    torch.testing.assert_close(torch.from_numpy(loaded.encode_formatted(texts)), trained, atol=1e-5, rtol=1e-4)
    base = Encoder.load(EncoderSettings(model=str(word_llama), device="cpu", show_progress=False, max_length=32))
    assert not torch.allclose(torch.from_numpy(base.encode_formatted(texts)), trained, atol=1e-4)


def test_bert_full_finetuning_lowers_the_loss(tiny_bert_encoder: Path) -> None:
    torch.manual_seed(0)
    trainable = load_trainable_encoder(_config(tiny_bert_encoder))
    assert not trainable.lora and trainable.spec.pooling == "cls"
    model = ContrastiveModel(trainable.model, InfoNCELoss(temperature=0.05)).eval()  # eval: no dropout noise
    batch = ContrastiveCollator(trainable.tokenizer, trainable.spec, 16, 32)(EXAMPLES)
    losses = [_step(model, batch, lr=1e-3) for _ in range(4)]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # Full fine-tuning, except BERT's pooler: no pooling mode reads it, and under DDP a weight
    # without gradient would keep its bucket from ever being averaged.
    assert frozen and all(".pooler." in n for n in frozen)
    assert losses[-1] < losses[0]


def test_collator_rejects_ragged_groups(tiny_bert_encoder: Path) -> None:
    trainable = load_trainable_encoder(_config(tiny_bert_encoder))
    collator = ContrastiveCollator(trainable.tokenizer, trainable.spec)
    with pytest.raises(ValueError, match="same number of passages"):
        collator([EXAMPLES[0], Example("q", [Passage("p")], [1])])
