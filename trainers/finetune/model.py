"""The trainable encoder, the batch collator and the contrastive model the harness optimises.

The encoder is the runtime's own :class:`~retrosearch.core.encoder.model.EncoderModel` (same
backbone, pooling and normalisation), and batches are formatted with the checkpoint's templates
and tokenized as the runtime tokenizes: what is trained is exactly what is later served.
Decoder LLMs get LoRA adapters through ``peft`` and, on request, gradient checkpointing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import TaskType, get_peft_model
from torch import nn
from transformers import PreTrainedTokenizerBase

from retrosearch.core.config import EncoderSettings, EncoderSpec
from retrosearch.core.encoder.checkpoint import read_spec, resolve_model_path
from retrosearch.core.encoder.model import EncoderModel
from retrosearch.core.encoder.runtime import prepare_tokenizer
from retrosearch.core.encoder.tokenization import TextTokenizer
from retrosearch.trainers.finetune.config import FinetuneConfig, LoraConfig
from retrosearch.trainers.finetune.data import Example, passage_key
from retrosearch.trainers.finetune.loss import ContrastiveOutput, InfoNCELoss


class ContrastiveCollator:
    """Examples -> padded tensors: queries ``[B, Lq]``, passages ``[B*G, Lp]`` and their keys.

    Texts are formatted and tokenized by the runtime's own :class:`TextTokenizer` (templates with
    ``{eos}`` etc. bound, over-long texts cut without losing the template); the padding side is the spec's.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        spec: EncoderSpec,
        query_max_length: int | None = None,
        passage_max_length: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_tokenizer = TextTokenizer(tokenizer, spec, spec.max_length)
        self.formatter = self.text_tokenizer.formatter
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length

    def _pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        sizes = {len(e.passages) for e in examples}
        if len(sizes) != 1:
            raise ValueError(f"every example needs the same number of passages, got {sorted(sizes)}")
        queries = self.text_tokenizer.queries((e.query for e in examples), self.query_max_length)
        passages = self.text_tokenizer.documents([p for e in examples for p in e.passages], self.passage_max_length)
        query_ids, query_mask = self._pad(queries)
        passage_ids, passage_mask = self._pad(passages)
        width = max(len(e.positive_keys) for e in examples)
        positive_keys = torch.full((len(examples), width), -1, dtype=torch.long)
        for row, example in enumerate(examples):
            positive_keys[row, : len(example.positive_keys)] = torch.tensor(example.positive_keys, dtype=torch.long)
        passage_keys = torch.tensor([passage_key(p) for e in examples for p in e.passages], dtype=torch.long)
        return {
            "query_input_ids": query_ids,
            "query_attention_mask": query_mask,
            "passage_input_ids": passage_ids,
            "passage_attention_mask": passage_mask,
            "passage_keys": passage_keys,
            "positive_keys": positive_keys,
        }


class ContrastiveModel(nn.Module):
    """Encoder + InfoNCE in one ``forward`` (DDP needs a single forward per backward)."""

    def __init__(self, encoder: EncoderModel, loss: InfoNCELoss) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        passage_input_ids: torch.Tensor,
        passage_attention_mask: torch.Tensor,
        passage_keys: torch.Tensor | None = None,
        positive_keys: torch.Tensor | None = None,
    ) -> ContrastiveOutput:
        queries = self.encoder(query_input_ids, query_attention_mask)
        passages = self.encoder(passage_input_ids, passage_attention_mask)
        return self.loss(queries, passages, passage_keys, positive_keys)


@dataclass
class TrainableEncoder:
    """What fine-tuning starts from: the module, its tokenizer, the spec and where it came from."""

    model: EncoderModel
    tokenizer: PreTrainedTokenizerBase
    spec: EncoderSpec
    base_path: Path
    lora: bool


def uses_lora(config: FinetuneConfig, spec: EncoderSpec) -> bool:
    """LoRA when asked, or by default for last-token pooled (decoder LLM) encoders."""
    return spec.pooling == "last" if config.lora == "auto" else bool(config.lora)


def add_lora(backbone: nn.Module, settings: LoraConfig) -> nn.Module:
    """Wrap ``backbone`` with LoRA adapters; only the adapter weights stay trainable."""
    peft_config = PeftLoraConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
    )
    return get_peft_model(backbone, peft_config)


def freeze_unread_heads(backbone: nn.Module) -> None:
    """Stop gradients to a BERT-style ``pooler``, whose output no pooling mode reads.

    Its weights would never receive a gradient, and DDP (without the costly
    ``find_unused_parameters``) then waits for them forever: the bucket holding them is never
    reduced, so the other gradients in it silently stay unaveraged across workers.
    """
    pooler = getattr(backbone, "pooler", None)
    if isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)


def load_trainable_encoder(config: FinetuneConfig) -> TrainableEncoder:
    """The starting checkpoint as a trainable :class:`EncoderModel` (fp32 weights; autocast does the rest)."""
    base_path = resolve_model_path(config.model)
    overrides = EncoderSettings(
        model=config.model,
        pooling=config.pooling,
        query_template=config.query_template,
        passage_template=config.passage_template,
    )
    spec = read_spec(base_path, overrides)
    model = EncoderModel.from_pretrained(base_path, spec, dtype=torch.float32)
    tokenizer = prepare_tokenizer(base_path, spec)
    backbone = model.backbone
    if getattr(backbone.config, "use_cache", None):
        backbone.config.use_cache = False  # a KV cache is useless for encoding and clashes with checkpointing
    freeze_unread_heads(backbone)
    lora = uses_lora(config, spec)
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing propagates gradients to LoRA weights even when the
        # frozen embedding output does not require grad.
        if hasattr(backbone, "activation_checkpointing_enable"):
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:
        model.backbone = add_lora(backbone, config.lora_config)
    return TrainableEncoder(model, tokenizer, spec, base_path, lora)
