"""The encoder as a torch module: a Hugging Face backbone, pooling and normalisation.

Trainers compute gradients through this same module; the runtime runs it under
``torch.inference_mode``. Keeping one module is what makes a trained checkpoint encode exactly
as it was trained.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel

from retrosearch.core.config import EncoderSpec
from retrosearch.core.encoder.pooling import pool


class EncoderModel(nn.Module):
    """``forward(input_ids, attention_mask) -> [batch, dim]`` embeddings as the spec defines them."""

    runtime = "torch"

    def __init__(self, backbone: PreTrainedModel, spec: EncoderSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec

    @classmethod
    def from_pretrained(cls, path: str | Path, spec: EncoderSpec, dtype: torch.dtype | None = None) -> "EncoderModel":
        """Load the backbone of a checkpoint folder (an MLM or causal-LM head is dropped)."""
        backbone = AutoModel.from_pretrained(str(path), dtype=dtype)
        return cls(backbone, spec)

    @property
    def config(self):
        """The backbone's Hugging Face config (positions, hidden size)."""
        return self.backbone.config

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.backbone.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        if self.spec.padding_side == "left" and "position_ids" not in extra:
            # Left padding shifts the real tokens; give them the positions they would have unpadded.
            extra["position_ids"] = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
        embeddings = pool(out.last_hidden_state, attention_mask, self.spec.pooling)
        if self.spec.unit_vectors:
            embeddings = F.normalize(embeddings.float(), p=2, dim=-1)
        return embeddings


class TokenStates(nn.Module):
    """``forward(input_ids, attention_mask[, token_type_ids]) -> [batch, length, dim]``: the backbone's
    last hidden states, before pooling, exactly as :class:`EncoderModel` computes them."""

    def __init__(self, model: EncoderModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        named = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.model.backbone(input_ids=input_ids, attention_mask=attention_mask, **named)
        return out.last_hidden_state
