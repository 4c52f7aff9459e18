"""The MLM collator: token blocks -> masked inputs and labels, each example masked from its own seed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from retrosearch.trainers.harness.method import Batch
from retrosearch.trainers.mlm.config import MLMConfig
from retrosearch.trainers.retromae.data import ENCODER, BlockCollator
from retrosearch.trainers.retromae.mask import IGNORE, masked_encoder_input


class MLMCollator(BlockCollator):
    """MLM batches from blocks of token ids (without special tokens), masked as RetroMAE's encoder is."""

    def __init__(self, tokenizer, config: MLMConfig) -> None:
        super().__init__(tokenizer, config.max_length, config.masking)
        self.config = config

    def example(self, block: Sequence[int], seed: int) -> dict[str, torch.Tensor]:
        """The masked ids and labels of one example (unpadded), all randomness drawn from ``seed``."""
        ids = self.frame(block)
        generator = torch.Generator().manual_seed(seed)
        inputs, labels, _, _ = masked_encoder_input(ids, self.tables, self.config.mask_ratio, generator)
        return {"input_ids": inputs, "labels": labels}

    def __call__(self, blocks: Sequence[Sequence[int]], seeds: Sequence[int]) -> Batch:
        """Pad the examples of ``blocks`` into one batch (ids with pad, labels with -100)."""
        parts = [self.example(block, seed) for block, seed in zip(blocks, seeds, strict=True)]
        inputs = self.pad(parts, {"input_ids": self.pad_id, "labels": IGNORE})
        # The term shares RetroMAE's name: the encoder's MLM loss, comparable across the methods.
        return Batch(inputs, {ENCODER: float((inputs["labels"] != IGNORE).sum())}, examples=len(parts))
