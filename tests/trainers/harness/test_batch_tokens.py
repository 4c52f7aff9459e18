"""What tokens/s counts: the tokens a batch's model reads, not its padding."""

from __future__ import annotations

import torch

from retrosearch.trainers.harness.method import Batch


def test_every_2d_attention_mask_counts_and_a_3d_one_does_not():
    inputs = {
        "query_attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
        "passage_attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        "decoder_visible": torch.ones(2, 4, 4),  # a position mask is not tokens
        "input_ids": torch.zeros(2, 4, dtype=torch.long),
    }
    assert Batch(inputs, {}).input_tokens() == 3 + 6
    assert Batch(inputs, {}, tokens=11).input_tokens() == 11  # a collator that knows says so
    assert Batch({"input_ids": torch.zeros(2, 3)}, {}).input_tokens() == 0
    assert Batch(inputs, {}, tokens=11).to(torch.device("cpu")).input_tokens() == 11
