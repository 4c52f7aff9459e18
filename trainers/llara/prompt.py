"""LLaRA's prompts and the joint SELF/NEXT sequence with its 4-D attention mask.

One forward pass carries both pretext prompts::

    [specials] prefix TEXT | SELF suffix (ends in the summary token(s)) | NEXT suffix (ditto)

SELF and NEXT each see the text and themselves, never each other, and NEXT's position ids
continue from the text as if SELF were absent. So the hidden state at the end of SELF equals the
one a plain causal pass over ``TEXT + SELF`` gives, and the one at the end of NEXT equals a plain
pass over ``TEXT + NEXT``: exactly what the encoder runtime computes for a passage (SELF / EBAE
prompt) and for a query (NEXT / EBAR prompt).

The suffixes are tokenized by the model's own tokenizer, never hard-coded ids or lengths (the
reference slices fixed LLaMA-2 positions and silently breaks on other tokenizers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from retrosearch.trainers.llara.config import PromptStyle
from retrosearch.trainers.retromae.data import special_affixes


# Segment codes of a joint sequence.
PAD, TEXT, SELF, NEXT = 0, 1, 2, 3

_REFERENCE_SUMMARY = 8


@dataclass(frozen=True)
class PromptSet:
    """The wording around the text. ``{eos}`` stands for the tokenizer's end-of-sequence token.

    ``summary`` is how many final tokens of each suffix carry the embedding (1 in the paper: the
    closing ``</s>``; 8 added special tokens in the reference code). ``added_tokens`` must be in
    the vocabulary before the suffixes are tokenized.
    """

    prefix: str
    self_suffix: str
    next_suffix: str
    summary: int = 1
    added_tokens: tuple[str, ...] = ()

    @classmethod
    def named(cls, style: PromptStyle) -> PromptSet:
        """The paper's one-token prompts or the reference code's eight-token ones."""
        if style == "paper":
            return cls("", " The original sentence:{eos}", " The next sentence:{eos}")
        if style == "reference":
            tokens = tuple(f"<s{i}>" for i in range(1, 2 * _REFERENCE_SUMMARY + 1))
            return cls(
                '"',
                '", summarize the above passage within eight words: ' + "".join(tokens[:_REFERENCE_SUMMARY]),
                '", predict the following passage within eight words: '
                + "".join(tokens[_REFERENCE_SUMMARY:]),
                summary=_REFERENCE_SUMMARY,
                added_tokens=tokens,
            )
        raise ValueError(f"unknown prompt style {style!r}; choose paper or reference")

    def passage_template(self) -> str:
        """The encoder-runtime template of a passage (the SELF / EBAE prompt)."""
        return self.prefix + "{text}" + self.self_suffix

    def query_template(self) -> str:
        """The encoder-runtime template of a query (the NEXT / EBAR prompt)."""
        return self.prefix + "{text}" + self.next_suffix


def add_prompt_tokens(tokenizer, prompts: PromptSet) -> int:
    """Add the prompt's special tokens to ``tokenizer`` (in a fixed order); returns how many were new."""
    if not prompts.added_tokens:
        return 0
    missing = [t for t in prompts.added_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    return len(missing)


@dataclass(frozen=True)
class PromptIds:
    """The prompt pieces as token ids for one tokenizer."""

    head: tuple[int, ...]  # the tokenizer's leading specials (e.g. <s>) and the prompt prefix
    self_part: tuple[int, ...]  # SELF suffix plus the tokenizer's trailing specials, if any
    next_part: tuple[int, ...]
    summary: int

    @classmethod
    def build(cls, tokenizer, prompts: PromptSet) -> PromptIds:
        """Tokenize ``prompts`` the way the encoder runtime tokenizes a templated text."""
        lead, trail = (t.tolist() for t in special_affixes(tokenizer))
        eos = tokenizer.eos_token
        if eos is None and ("{eos}" in prompts.self_suffix or "{eos}" in prompts.next_suffix):
            raise ValueError(f"{type(tokenizer).__name__} has no eos token for the '{{eos}}' in the prompts")

        def ids(text: str) -> list[int]:
            return tokenizer(text.replace("{eos}", eos or ""), add_special_tokens=False)["input_ids"]

        self_part, next_part = ids(prompts.self_suffix) + trail, ids(prompts.next_suffix) + trail
        if min(len(self_part), len(next_part)) < prompts.summary:
            raise ValueError(f"a prompt suffix is shorter than its {prompts.summary} summary tokens")
        return cls(tuple(lead + ids(prompts.prefix)), tuple(self_part), tuple(next_part), prompts.summary)

    @property
    def overhead(self) -> int:
        """Tokens the joint sequence adds to the text."""
        return len(self.head) + len(self.self_part) + len(self.next_part)


@dataclass
class JointBatch:
    """Joint sequences of a batch, padded, with everything the attention needs.

    ``visible[b, i, j]``: may position ``i`` attend to ``j``. ``self_index`` / ``next_index``
    ``[B, summary]`` locate the summary tokens whose states are the two embeddings.
    """

    input_ids: torch.Tensor
    segments: torch.Tensor
    position_ids: torch.Tensor
    visible: torch.Tensor
    self_index: torch.Tensor
    next_index: torch.Tensor


def joint_batch(
    texts: Sequence[Sequence[int]],
    prompt: PromptIds,
    pad_id: int,
    padding_side: Literal["left", "right"] = "left",
) -> JointBatch:
    """Build the joint SELF/NEXT sequences of ``texts`` (token ids without specials) and their mask."""
    rows = []
    for text in texts:
        body = list(prompt.head) + [int(t) for t in np.asarray(text).tolist()]
        ids = body + list(prompt.self_part) + list(prompt.next_part)
        segments = [TEXT] * len(body) + [SELF] * len(prompt.self_part) + [NEXT] * len(prompt.next_part)
        # NEXT continues from the text's positions, as if SELF were not there.
        positions = list(range(len(body) + len(prompt.self_part))) + list(
            range(len(body), len(body) + len(prompt.next_part))
        )
        rows.append((ids, segments, positions))
    size, width = len(rows), max(len(r[0]) for r in rows)
    input_ids = torch.full((size, width), pad_id, dtype=torch.long)
    segments = torch.full((size, width), PAD, dtype=torch.long)
    position_ids = torch.zeros((size, width), dtype=torch.long)
    for b, (ids, segs, positions) in enumerate(rows):
        span = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
        input_ids[b, span] = torch.tensor(ids)
        segments[b, span] = torch.tensor(segs)
        position_ids[b, span] = torch.tensor(positions)
    visible = joint_visibility(segments)
    k = prompt.summary
    last_self = _last_of(segments, SELF)
    last_next = _last_of(segments, NEXT)
    offsets = torch.arange(-k + 1, 1)
    return JointBatch(
        input_ids,
        segments,
        position_ids,
        visible,
        last_self[:, None] + offsets,
        last_next[:, None] + offsets,
    )


def _last_of(segments: torch.Tensor, code: int) -> torch.Tensor:
    width = segments.shape[1]
    return width - 1 - (segments == code).flip(dims=[1]).to(torch.int32).argmax(dim=1)


def joint_visibility(segments: torch.Tensor) -> torch.Tensor:
    """``[B, L, L]`` bool: causal over real tokens, SELF and NEXT blind to each other.

    Padding rows see only themselves: a row with nothing visible would make attention NaN, and
    nothing reads those rows.
    """
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    rows, cols = segments[:, :, None], segments[:, None, :]
    visible = causal & (cols != PAD) & (rows != PAD)
    visible &= ~((rows == NEXT) & (cols == SELF)) & ~((rows == SELF) & (cols == NEXT))
    return visible | torch.eye(width, dtype=torch.bool)


def additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 1, L, L]`` float mask (0 where visible, the dtype's minimum elsewhere) for eager attention."""
    zero = torch.zeros((), dtype=dtype, device=visible.device)
    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=visible.device)
    return torch.where(visible[:, None], zero, blocked)
