"""RetroMAE's masks, vectorised: the encoder's MLM mask and the decoder's per-row attention matrix.

The encoder's mask is BERT's: plain MLM pretraining (:mod:`retrosearch.trainers.mlm`) uses the
same :func:`masked_encoder_input`, so the two objectives differ only in what is added to it.

Words are the unit of masking for WordPiece vocabularies (a ``##`` piece belongs to the word
before it) and single tokens for BPE and SentencePiece vocabularies (their pieces do not say
reliably where a word ends). Special tokens are never masked.

The decoder matrix (``visible[i, j]``: may row ``i`` look at column ``j``) is built from a pool
of whole-word masks, each row drawing one: every row sees its own random share of the context,
never its own column, and always column 0, the slot that carries the sentence embedding. The
reference builds it with L deep copies of Python lists per example and lets RoBERTa rows lose
column 0; here it is a few tensor operations and column 0 is visible by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

IGNORE = -100


@dataclass(frozen=True)
class VocabTables:
    """Per-vocabulary lookups the masks need, built once per tokenizer."""

    special: torch.Tensor  # bool [V]: special tokens, never masked, never targets
    continues: torch.Tensor  # bool [V]: piece continues the previous word (all False in token mode)
    replacements: torch.Tensor  # long [R]: ids a masked token may be swapped for (non-special)
    mask_id: int
    whole_word: bool

    @classmethod
    def from_tokenizer(
        cls, tokenizer, masking: Literal["auto", "whole_word", "token"] = "auto"
    ) -> "VocabTables":
        """Tables for ``tokenizer``; ``auto`` masks whole words only for WordPiece vocabularies."""
        vocab = tokenizer.get_vocab()
        size = max(len(tokenizer), max(vocab.values()) + 1)
        wordpiece = any(token.startswith("##") for token in vocab)
        if masking == "whole_word" and not wordpiece:
            raise ValueError("whole-word masking needs a WordPiece ('##') vocabulary; use masking='token'")
        whole_word = wordpiece and masking != "token"
        if tokenizer.mask_token_id is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no mask token; RetroMAE needs one")
        special = torch.zeros(size, dtype=torch.bool)
        special[torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)] = True
        continues = torch.zeros(size, dtype=torch.bool)
        if whole_word:
            pieces = [i for token, i in vocab.items() if token.startswith("##")]
            continues[torch.tensor(pieces, dtype=torch.long)] = True
        replacements = torch.tensor(sorted(i for i in vocab.values() if not special[i]), dtype=torch.long)
        return cls(special, continues, replacements, int(tokenizer.mask_token_id), whole_word)


def word_index(ids: torch.Tensor, tables: VocabTables) -> tuple[torch.Tensor, int]:
    """Word number of each token of one example (``-1`` for special tokens) and the number of words."""
    special = tables.special[ids]
    starts = ~special & ~tables.continues[ids]
    # A piece right after a special token (or at the start) opens a word even if it looks like a continuation.
    after_special = torch.ones_like(special)
    after_special[1:] = special[:-1]
    starts |= ~special & after_special
    word = torch.cumsum(starts.long(), dim=0) - 1
    word[special] = -1
    return word, int(starts.sum())


def sample_word_masks(
    word: torch.Tensor, num_words: int, ratio: float, count: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` independent masks ``[count, L]``, each hiding whole words, about ``ratio`` of the tokens.

    Words are taken in a random order while the running token total stays within the budget
    (``round(ratio * tokens)``, at least one word), as the reference does with Python loops.
    """
    if num_words == 0:
        return torch.zeros(count, word.numel(), dtype=torch.bool)
    real = word >= 0
    lengths = torch.bincount(word[real], minlength=num_words)
    budget = max(1, round(float(lengths.sum()) * ratio))
    order = torch.rand(count, num_words, generator=generator).argsort(dim=1)
    take = lengths[order].cumsum(dim=1) <= budget
    take[:, 0] = True
    chosen = torch.zeros(count, num_words, dtype=torch.bool).scatter_(1, order, take)
    return chosen.gather(1, word.clamp(min=0).expand(count, -1)) & real


def mlm_noise(
    ids: torch.Tensor, masked: torch.Tensor, tables: VocabTables, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of the masked positions: 80% [MASK], 10% a random token, 10% unchanged."""
    labels = torch.where(masked, ids, torch.full_like(ids, IGNORE))
    draw = torch.rand(ids.shape, generator=generator)
    pick = torch.randint(len(tables.replacements), ids.shape, generator=generator)
    inputs = torch.where(masked & (draw < 0.8), torch.full_like(ids, tables.mask_id), ids)
    inputs = torch.where(masked & (draw >= 0.8) & (draw < 0.9), tables.replacements[pick], inputs)
    return inputs, labels


def masked_encoder_input(
    ids: torch.Tensor, tables: VocabTables, ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """BERT's MLM input of one example: about ``ratio`` of its tokens (whole words where the tables
    say so) chosen and corrupted by :func:`mlm_noise`.

    Returns the corrupted ids, the labels (``IGNORE`` where nothing is predicted), and the word
    index and word count that chose them (RetroMAE's decoder masks the same words).
    """
    word, num_words = word_index(ids, tables)
    masked = sample_word_masks(word, num_words, ratio, 1, generator)[0]
    inputs, labels = mlm_noise(ids, masked, tables, generator)
    return inputs, labels, word, num_words


def decoder_visibility(
    word: torch.Tensor, num_words: int, ratio: float, pool: int, generator: torch.Generator
) -> torch.Tensor:
    """The position-specific attention matrix ``[L, L]`` of one example (True: may attend)."""
    length = word.numel()
    masks = sample_word_masks(word, num_words, ratio, min(length, pool), generator)
    rows = torch.randint(masks.shape[0], (length,), generator=generator)
    hidden = masks[rows]  # a copy: each row gets the mask it drew
    hidden.fill_diagonal_(True)
    visible = ~hidden
    # Column 0 holds the sentence embedding, not a token: every row must see it (row 0's target is
    # the [CLS] slot, which is never predicted, so it may look at it too).
    visible[:, 0] = True
    return visible
