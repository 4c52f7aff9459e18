"""Real text for the RetroMAE tests: SciFact abstracts, tokenized."""

from __future__ import annotations

import json

import pytest
import torch

from retrosearch.trainers.retromae.data import special_affixes
from tests.conftest import DATA


def scifact_texts(count: int) -> list[str]:
    """The first ``count`` SciFact abstracts (title + text)."""
    path = DATA / "scifact" / "corpus.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    texts = []
    with path.open() as handle:
        for line, _ in zip(handle, range(count)):
            record = json.loads(line)
            texts.append(f"{record['title']} {record['text']}")
    return texts


def scifact_blocks(tokenizer, count: int, length: int) -> list[list[int]]:
    """The first ``length`` token ids (no special tokens) of ``count`` SciFact abstracts."""
    ids = tokenizer(scifact_texts(count), add_special_tokens=False, verbose=False)["input_ids"]
    return [row[:length] for row in ids]


def with_specials(tokenizer, block: list[int]) -> torch.Tensor:
    """``block`` framed by the tokenizer's special tokens, as the collator frames it."""
    prefix, suffix = special_affixes(tokenizer)
    return torch.cat([prefix, torch.tensor(block, dtype=torch.long), suffix])
