"""The RetroMAE collator: token blocks -> encoder inputs and labels, decoder labels and attention matrix.

All randomness of an example comes from its own seed, so an example is masked the same way on
any worker and in any batch it lands in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from retrosearch.trainers.harness.method import Batch
from retrosearch.trainers.retromae.config import Masking, RetroMAEConfig
from retrosearch.trainers.retromae.mask import IGNORE, VocabTables, decoder_visibility, masked_encoder_input

# Loss-term names shared by the collator (counts) and the model (sums).
ENCODER, DECODER, BOW = "encoder_mlm", "decoder", "bow"


def special_affixes(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids the tokenizer puts before and after a single text ([CLS] / [SEP], <s> / </s>, ...)."""
    plain = tokenizer("retrieval", add_special_tokens=False)["input_ids"]
    full = tokenizer("retrieval", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            prefix, suffix = full[:start], full[start + len(plain) :]
            return torch.tensor(prefix, dtype=torch.long), torch.tensor(suffix, dtype=torch.long)
    raise ValueError(f"cannot tell where {type(tokenizer).__name__} puts its special tokens")


class BlockCollator:
    """What a masked-LM collator needs of a tokenizer: the mask tables, the special tokens that frame
    a block, the padding id; and the padding of examples into a batch."""

    def __init__(self, tokenizer, max_length: int, masking: Masking) -> None:
        self.tokenizer = tokenizer
        self.tables = VocabTables.from_tokenizer(tokenizer, masking)
        self.pad_id = int(tokenizer.pad_token_id)
        self.prefix, self.suffix = special_affixes(tokenizer)
        self.max_body = max_length - len(self.prefix) - len(self.suffix)

    def frame(self, block: Sequence[int]) -> torch.Tensor:
        """``block`` (cut to fit) between the tokenizer's special tokens."""
        # a copy: blocks may be read-only
        body = torch.tensor(np.asarray(block[: self.max_body]), dtype=torch.long)
        return torch.cat([self.prefix, body, self.suffix])

    def pad(self, parts: Sequence[dict[str, torch.Tensor]], fills: dict[str, int]) -> dict[str, torch.Tensor]:
        """The 1-d tensors ``fills`` names, padded into ``[B, L]`` rows with each name's fill value, and
        the attention mask (1 over each example's own tokens)."""
        size, width = len(parts), max(len(p["input_ids"]) for p in parts)
        out = {name: torch.full((size, width), fill, dtype=torch.long) for name, fill in fills.items()}
        out["attention_mask"] = torch.zeros((size, width), dtype=torch.long)
        for row, part in enumerate(parts):
            n = len(part["input_ids"])
            for name in fills:
                out[name][row, :n] = part[name]
            out["attention_mask"][row, :n] = 1
        return out


class RetroMAECollator(BlockCollator):
    """Builds RetroMAE batches from blocks of token ids (without special tokens)."""

    def __init__(self, tokenizer, config: RetroMAEConfig) -> None:
        super().__init__(tokenizer, config.max_length, config.masking)
        self.config = config

    def example(self, block: Sequence[int], seed: int) -> dict[str, torch.Tensor]:
        """The tensors of one example (unpadded), all randomness drawn from ``seed``."""
        cfg = self.config
        ids = self.frame(block)
        generator = torch.Generator().manual_seed(seed)
        encoder_ids, encoder_labels, word, num_words = masked_encoder_input(
            ids, self.tables, cfg.encoder_mask_ratio, generator
        )
        visible = decoder_visibility(
            word, num_words, cfg.decoder_mask_ratio, cfg.decoder_mask_pool, generator
        )
        # Every ordinary token is a decoder target, masked in the encoder or not: the data gain of
        # enhanced decoding.
        decoder_labels = torch.where(self.tables.special[ids], torch.full_like(ids, IGNORE), ids)
        return {
            "input_ids": ids,
            "encoder_input_ids": encoder_ids,
            "encoder_labels": encoder_labels,
            "decoder_labels": decoder_labels,
            "decoder_visible": visible,
        }

    def __call__(self, blocks: Sequence[Sequence[int]], seeds: Sequence[int]) -> Batch:
        """Pad the examples of ``blocks`` into one batch (ids with pad, labels with -100)."""
        parts = [self.example(block, seed) for block, seed in zip(blocks, seeds, strict=True)]
        fills = {"input_ids": self.pad_id, "encoder_input_ids": self.pad_id, "encoder_labels": IGNORE,
                 "decoder_labels": IGNORE}
        inputs = self.pad(parts, fills)
        size, width = inputs["input_ids"].shape
        visible = torch.zeros((size, width, width), dtype=torch.bool)
        visible[:, :, 0] = True  # padding rows look at the sentence slot only: no row is empty
        for row, part in enumerate(parts):
            n = len(part["input_ids"])
            visible[row, :n, :n] = part["decoder_visible"]
        inputs["decoder_visible"] = visible
        counts = {
            ENCODER: float((inputs["encoder_labels"] != IGNORE).sum()),
            DECODER: float((inputs["decoder_labels"] != IGNORE).sum()),
        }
        if self.config.dupmae:
            counts[BOW] = float(size)
        return Batch(inputs, counts, examples=size)
