"""Pooling token states into one vector: ``cls``, ``mean`` and ``last``.

All three work with left and right padding: ``cls`` takes the first real token, ``last`` the
last real token (decoder LLMs put the summary in their final position), ``mean`` averages the
real tokens. Accumulation is in float32 so half-precision models pool as accurately as fp32.
"""

from __future__ import annotations

import torch

from retrosearch.core.config import Pooling


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first non-padding position of each row."""
    return attention_mask.to(torch.int32).argmax(dim=1)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position of each row."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.to(torch.int32).flip(dims=[1]).argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """Pool ``hidden`` ``[batch, length, dim]`` under ``attention_mask`` ``[batch, length]``."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "cls":
        return hidden[rows, first_token_index(attention_mask)]
    if mode == "last":
        return hidden[rows, last_token_index(attention_mask)]
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (hidden.to(torch.float32) * mask).sum(dim=1)
        return (summed / mask.sum(dim=1).clamp(min=1e-9)).to(hidden.dtype)
    raise ValueError(f"unknown pooling {mode!r}; choose cls, mean or last")
