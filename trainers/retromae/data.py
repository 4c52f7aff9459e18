"""The RetroMAE collator: token blocks -> encoder inputs and labels, decoder labels and attention matrix.

All randomness of an example comes from its own seed, so an example is masked the same way on
any worker and in any batch it lands in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from retrosearch.trainers.harness.method import Batch
from retrosearch.trainers.retromae.config import RetroMAEConfig
from retrosearch.trainers.retromae.mask import (
    IGNORE,
    VocabTables,
    decoder_visibility,
    mlm_noise,
    sample_word_masks,
    word_index,
)

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


class RetroMAECollator:
    """Builds RetroMAE batches from blocks of token ids (without special tokens)."""

    def __init__(self, tokenizer, config: RetroMAEConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.tables = VocabTables.from_tokenizer(tokenizer, config.masking)
        self.pad_id = int(tokenizer.pad_token_id)
        self.prefix, self.suffix = special_affixes(tokenizer)
        self.max_body = config.max_length - len(self.prefix) - len(self.suffix)

    def example(self, block: Sequence[int], seed: int) -> dict[str, torch.Tensor]:
        """The tensors of one example (unpadded), all randomness drawn from ``seed``."""
        cfg = self.config
        body = torch.tensor(
            np.asarray(block[: self.max_body]), dtype=torch.long
        )  # a copy: blocks may be read-only
        ids = torch.cat([self.prefix, body, self.suffix])
        generator = torch.Generator().manual_seed(seed)
        word, num_words = word_index(ids, self.tables)
        encoder_mask = sample_word_masks(word, num_words, cfg.encoder_mask_ratio, 1, generator)[0]
        encoder_ids, encoder_labels = mlm_noise(ids, encoder_mask, self.tables, generator)
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
        size, width = len(parts), max(len(p["input_ids"]) for p in parts)
        input_ids = torch.full((size, width), self.pad_id, dtype=torch.long)
        encoder_input_ids = input_ids.clone()
        encoder_labels = torch.full((size, width), IGNORE, dtype=torch.long)
        decoder_labels = encoder_labels.clone()
        attention_mask = torch.zeros((size, width), dtype=torch.long)
        visible = torch.zeros((size, width, width), dtype=torch.bool)
        visible[:, :, 0] = True  # padding rows look at the sentence slot only: no row is empty
        for row, part in enumerate(parts):
            n = len(part["input_ids"])
            input_ids[row, :n] = part["input_ids"]
            encoder_input_ids[row, :n] = part["encoder_input_ids"]
            encoder_labels[row, :n] = part["encoder_labels"]
            decoder_labels[row, :n] = part["decoder_labels"]
            attention_mask[row, :n] = 1
            visible[row, :n, :n] = part["decoder_visible"]
        counts = {
            ENCODER: float((encoder_labels != IGNORE).sum()),
            DECODER: float((decoder_labels != IGNORE).sum()),
        }
        if self.config.dupmae:
            counts[BOW] = float(size)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "encoder_input_ids": encoder_input_ids,
            "encoder_labels": encoder_labels,
            "decoder_labels": decoder_labels,
            "decoder_visible": visible,
        }
        return Batch(inputs, counts, examples=size)
