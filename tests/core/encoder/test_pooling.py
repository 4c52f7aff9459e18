"""Each pooling mode of the runtime equals a direct transformers computation on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.core.encoder.pooling import last_token_index, pool

TEXTS = ["the cell protein", "a study of cancer patients with increased risk of disease", "flow", "mach number theory"]


def _direct_unpadded(folder, texts, take):
    """Run each text alone (no padding at all) through plain transformers and apply ``take``."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]
            out.append(take(hidden))
    vectors = torch.stack(out)
    return torch.nn.functional.normalize(vectors, dim=-1).numpy()


@pytest.mark.parametrize(
    "mode,take", [("cls", lambda h: h[0]), ("mean", lambda h: h.mean(dim=0)), ("last", lambda h: h[-1])]
)
def test_bert_pooling_matches_direct_computation(tiny_bert, mode, take):
    encoder = Encoder.load(EncoderSettings(model=str(tiny_bert), pooling=mode, batch_size=3, device="cpu"))
    got = encoder.encode_formatted(TEXTS)
    want = _direct_unpadded(tiny_bert, TEXTS, take)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_decoder_last_token_pooling_with_left_padding(tiny_llama):
    encoder = Encoder.load(EncoderSettings(model=str(tiny_llama), batch_size=4, device="cpu"))
    assert encoder.spec.pooling == "last" and encoder.spec.padding_side == "left"
    formatted = [encoder.formatter.passage(t) for t in TEXTS]
    assert all(f.endswith(encoder.tokenizer.eos_token) for f in formatted)
    got = encoder.encode_formatted(formatted)
    want = _direct_unpadded(tiny_llama, formatted, lambda h: h[-1])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_pool_handles_both_padding_sides():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [1, 3]
    assert last_token_index(left).tolist() == [3, 3]
    assert pool(hidden, right, "cls")[:, 0].tolist() == [0.0, 4.0]
    assert pool(hidden, left, "cls")[:, 0].tolist() == [2.0, 4.0]
    assert pool(hidden, right, "mean")[:, 0].tolist() == [0.5, 5.5]
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(hidden, right, "max")
