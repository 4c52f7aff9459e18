"""Training pairs (a text and the text that follows it) and the collator of joint LLaRA batches.

Pairs never cross documents: in a corpus file the next record is usually unrelated, and EBAR is
about predicting what *follows*. A document gives its consecutive passages (blocks cut at
sentence ends; a document that fits one block is cut in two near its middle) or its consecutive
sentences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from retrosearch.trainers.harness.data import _SENTENCE_ENDS, PackedTokens, split_document
from retrosearch.trainers.harness.method import Batch
from retrosearch.trainers.llara.config import LLaRAConfig, PairUnit
from retrosearch.trainers.llara.prompt import PAD, TEXT, PromptIds, joint_batch

IGNORE = -100
# Loss-term names shared by the collator (counts) and the model (sums).
EBAE, EBAR, LM = "ebae", "ebar", "lm"
_TOKENIZE_BATCH = 256


class TokenPairs(Sequence[tuple[np.ndarray, np.ndarray]]):
    """``(text ids, next ids)`` pairs stored as two flat token arrays (compact to ship to workers)."""

    def __init__(self, texts: PackedTokens, nexts: PackedTokens) -> None:
        if len(texts) != len(nexts):
            raise ValueError("texts and nexts differ in number")
        self.texts, self.nexts = texts, nexts

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> TokenPairs:
        """Store ``pairs`` of token-id sequences."""
        pairs = list(pairs)
        return cls(
            PackedTokens.from_blocks(p[0] for p in pairs), PackedTokens.from_blocks(p[1] for p in pairs)
        )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.texts[index], self.nexts[index]


def sentence_boundaries(tokenizer) -> np.ndarray:
    """Ids of the tokens that end a sentence in ``tokenizer``'s vocabulary."""
    vocab = tokenizer.get_vocab()
    return np.asarray([vocab[t] for t in _SENTENCE_ENDS if t in vocab], dtype=np.int64)


def _halves(ids: Sequence[int], boundaries: np.ndarray) -> list[Sequence[int]]:
    # A one-block document still has a "next passage": its second half, cut at the sentence end
    # nearest the middle (or the middle itself when there is none).
    ends = np.flatnonzero(np.isin(np.asarray(ids), boundaries)) + 1
    ends = ends[(ends > 0) & (ends < len(ids))]
    middle = len(ids) // 2
    cut = int(ends[np.argmin(np.abs(ends - middle))]) if ends.size else middle
    return [ids[:cut], ids[cut:]]


def document_pairs(
    ids: Sequence[int], unit: PairUnit, max_length: int, min_tokens: int, boundaries: np.ndarray
) -> list[tuple[Sequence[int], Sequence[int]]]:
    """Consecutive ``(text, next)`` pieces of one tokenized document, each ``min_tokens..max_length``."""
    if unit == "passages":
        pieces = split_document(ids, max_length, boundaries)
        if len(pieces) == 1:
            pieces = _halves(pieces[0], boundaries)
    elif unit == "sentences":
        ends = np.flatnonzero(np.isin(np.asarray(ids), boundaries)) + 1
        cuts = [0, *ends[ends < len(ids)].tolist(), len(ids)]
        pieces = [ids[a:b] for a, b in zip(cuts, cuts[1:])]
        merged: list[Sequence[int]] = []
        for piece in pieces:
            # Fragments ("e.g.", "Fig. 2.") join the sentence they came from.
            if merged and len(merged[-1]) < min_tokens:
                merged[-1] = list(merged[-1]) + list(piece)
            else:
                merged.append(piece)
        pieces = [p[:max_length] for p in merged]
    else:
        raise ValueError(f"unknown pair unit {unit!r}; choose passages or sentences")
    return [(a, b) for a, b in zip(pieces, pieces[1:]) if len(a) >= min_tokens and len(b) >= min_tokens]


def build_pairs(texts: Iterable[str], tokenizer, config: LLaRAConfig) -> TokenPairs:
    """Tokenize ``texts`` (no special tokens) and collect the pairs of every document."""
    boundaries = sentence_boundaries(tokenizer)
    pairs: list[tuple[Sequence[int], Sequence[int]]] = []
    pending: list[str] = []

    def flush() -> None:
        encoded = tokenizer(pending, add_special_tokens=False, return_attention_mask=False, verbose=False)
        for ids in encoded["input_ids"]:
            pairs.extend(document_pairs(ids, config.pairs, config.max_length, config.min_tokens, boundaries))
        pending.clear()

    for text in texts:
        pending.append(text)
        if len(pending) == _TOKENIZE_BATCH:
            flush()
            if config.max_pairs is not None and len(pairs) >= config.max_pairs:
                break
    if pending:
        flush()
    return TokenPairs.from_pairs(pairs[: config.max_pairs] if config.max_pairs else pairs)


def bag_targets(rows: Sequence[Sequence[int]], special: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` distinct ordinary token ids of each row, padded with ``IGNORE``."""
    distinct = []
    for row in rows:
        ids = torch.unique(torch.as_tensor(np.asarray(row), dtype=torch.long))
        distinct.append(ids[~special[ids]])
    width = max(1, max(len(d) for d in distinct))
    out = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for b, ids in enumerate(distinct):
        out[b, : len(ids)] = ids
    return out


class LLaRACollator:
    """Builds joint SELF/NEXT batches with the two bag-of-words targets (and LM labels if weighted)."""

    def __init__(self, tokenizer, config: LLaRAConfig, prompt: PromptIds) -> None:
        self.config = config
        self.prompt = prompt
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.special = torch.zeros(max(len(tokenizer), max(tokenizer.all_special_ids) + 1), dtype=torch.bool)
        self.special[tokenizer.all_special_ids] = True

    def __call__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], seeds: Sequence[int]) -> Batch:
        """A batch of ``pairs``; nothing is random, so ``seeds`` are not used."""
        cfg = self.config
        texts = [text[: cfg.max_length] for text, _ in pairs]
        nexts = [nxt[: cfg.max_length] for _, nxt in pairs]
        joint = joint_batch(texts, self.prompt, self.pad_id, cfg.padding_side)
        inputs = {
            "input_ids": joint.input_ids,
            "position_ids": joint.position_ids,
            "visible": joint.visible,
            "self_index": joint.self_index,
            "next_index": joint.next_index,
            "self_targets": bag_targets(texts, self.special),
            "next_targets": bag_targets(nexts, self.special),
        }
        size = len(pairs)
        counts = {EBAE: float(size), EBAR: float(size)}
        if cfg.lm_weight > 0:
            labels = lm_labels(joint.input_ids, joint.segments, len(self.prompt.head))
            inputs["lm_labels"] = labels
            counts[LM] = float((labels[:, 1:] != IGNORE).sum())
        # The joint sequences (prompt, text, both summaries) less their padding: what the LM reads.
        return Batch(inputs, counts, examples=size, tokens=int((joint.segments != PAD).sum()))


def lm_labels(input_ids: torch.Tensor, segments: torch.Tensor, head: int) -> torch.Tensor:
    """Next-token labels on the text tokens (not the prompt head), aligned with ``input_ids``.

    A label is kept only where the position before it is real, so the model's logits at ``j``
    predict ``labels[j + 1]`` without ever reading from padding.
    """
    text = segments == TEXT
    # Drop the head: the first ``head`` text tokens of each row.
    text &= text.long().cumsum(dim=1) > head
    previous_real = torch.zeros_like(text)
    previous_real[:, 1:] = segments[:, :-1] != PAD
    return torch.where(text & previous_real, input_ids, torch.full_like(input_ids, IGNORE))
