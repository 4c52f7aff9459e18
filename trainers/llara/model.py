"""LLaRA: a causal LM whose prompt-final states must predict, as bags of words, the text and what follows.

One pass over the joint sequence gives the SELF and NEXT summary states; each goes through the
LM's own output layer (no new head), is max-pooled over its summary tokens (a no-op for the
paper's single ``</s>``), and its log-softmax over the vocabulary must put mass on every distinct
token of its target: the text itself for EBAE, the next text for EBAR.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM

from retrosearch.trainers.harness.method import LossTerm
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.llara.data import EBAE, EBAR, IGNORE, LM
from retrosearch.trainers.llara.prompt import additive_mask

log = logging.getLogger(__name__)


def load_causal_lm(path: str | Path, config: LLaRAConfig, new_token_ids: list[int] | None = None):
    """The causal LM of ``path`` with an attention that takes custom 4-D masks, LoRA when asked.

    ``new_token_ids`` are tokens added to the tokenizer (the reference prompts' summary tokens):
    the embeddings grow to hold them, and under LoRA their rows stay trainable.
    """
    lm = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation=config.attn_implementation)
    needed = max(new_token_ids or [-1]) + 1
    if needed > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(needed)
    lm.config.use_cache = False
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so it works under LoRA too.
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora:
        targets = config.lora_targets or "all-linear"
        lm = get_peft_model(
            lm,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=targets,
                trainable_token_indices=list(new_token_ids) if new_token_ids else None,
                task_type="CAUSAL_LM",
            ),
        )
    return lm


def unwrap(lm) -> nn.Module:
    """The transformers causal LM inside ``lm`` (itself, or the base of a peft model)."""
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm


def bag_of_words_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed over the batch: ``-mean log p(t)`` over each row's distinct target ids (``IGNORE``-padded).

    ``logits`` ``[B, k, V]`` are max-pooled over the ``k`` summary tokens first.
    """
    logp = F.log_softmax(logits.float().amax(dim=1), dim=-1)
    valid = targets != IGNORE
    picked = logp.gather(1, targets.clamp(min=0)) * valid
    return -(picked.sum(dim=1) / valid.sum(dim=1).clamp(min=1)).sum()


class LLaRAModel(nn.Module):
    """``forward(**collator batch) -> {"ebae", "ebar"[, "lm"]: LossTerm}`` (summed losses)."""

    def __init__(self, lm, config: LLaRAConfig) -> None:
        super().__init__()
        self.lm = lm
        self.config = config
        causal = unwrap(lm)
        self.backbone = causal.base_model
        self.head = causal.get_output_embeddings()
        if self.head is None:
            raise ValueError(
                f"{type(causal).__name__} has no output embeddings (LM head) to predict words with"
            )

    def hidden(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """Last hidden states ``[B, L, D]`` of the joint sequence under its custom mask."""
        if self.backbone.config._attn_implementation == "eager":
            mask = additive_mask(visible, self.head.weight.dtype)
        else:
            mask = visible[:, None]  # SDPA takes the boolean mask as is
        out = self.backbone(input_ids=input_ids, attention_mask=mask, position_ids=position_ids)
        return out.last_hidden_state

    @staticmethod
    def summaries(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """States ``[B, k, D]`` at the summary positions ``index`` ``[B, k]``."""
        return hidden[torch.arange(hidden.shape[0], device=hidden.device)[:, None], index]

    def embed(
        self, input_ids, position_ids, visible, self_index, next_index
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The SELF (passage) and NEXT (query) embeddings ``[B, D]``: mean of each prompt's summary states."""
        hidden = self.hidden(input_ids, position_ids, visible)
        return self.summaries(hidden, self_index).mean(1), self.summaries(hidden, next_index).mean(1)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        visible: torch.Tensor,
        self_index: torch.Tensor,
        next_index: torch.Tensor,
        self_targets: torch.Tensor,
        next_targets: torch.Tensor,
        lm_labels: torch.Tensor | None = None,
    ) -> dict[str, LossTerm]:
        cfg = self.config
        hidden = self.hidden(input_ids, position_ids, visible)
        terms = {
            EBAE: LossTerm(
                bag_of_words_sum(self.head(self.summaries(hidden, self_index)), self_targets), cfg.self_weight
            ),
            EBAR: LossTerm(
                bag_of_words_sum(self.head(self.summaries(hidden, next_index)), next_targets), cfg.next_weight
            ),
        }
        if lm_labels is not None:
            labels = lm_labels[:, 1:]
            keep = labels != IGNORE
            logits = self.head(hidden[:, :-1][keep])
            terms[LM] = LossTerm(
                F.cross_entropy(logits.float(), labels[keep], reduction="sum"), cfg.lm_weight
            )
        return terms
