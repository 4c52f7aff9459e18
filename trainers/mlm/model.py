"""The MLM model: a masked LM whose loss is summed over the masked tokens (the harness averages it)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from retrosearch.trainers.harness.method import LossTerm
from retrosearch.trainers.retromae.data import ENCODER
from retrosearch.trainers.retromae.mask import IGNORE
from retrosearch.trainers.retromae.model import ce_sum, load_masked_lm, mlm_head


class MLMModel(nn.Module):
    """``forward(input_ids, attention_mask, labels) -> {"encoder_mlm": LossTerm}``: RetroMAE's encoder
    half alone (the same encoder, head and loss, no decoder)."""

    def __init__(self, lm: PreTrainedModel) -> None:
        super().__init__()
        self.lm = lm
        self.head = mlm_head(lm)
        self.encoder = lm.base_model

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "MLMModel":
        """The masked LM of ``path`` (a checkpoint without a head gets a tied one)."""
        return cls(load_masked_lm(path))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, LossTerm]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        masked = labels != IGNORE
        # Only the masked positions go through the head: the vocabulary projection is the costly part.
        return {ENCODER: LossTerm(ce_sum(self.head(hidden[masked]), labels[masked]))}
