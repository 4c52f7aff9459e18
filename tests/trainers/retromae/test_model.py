"""The RetroMAE model: the new MLM head, the decoder's blindness to its own token, the losses, DupMAE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from retrosearch.trainers.retromae.config import RetroMAEConfig
from retrosearch.trainers.retromae.data import RetroMAECollator
from retrosearch.trainers.retromae.model import RetroMAEModel, bag_of_words_sum, load_masked_lm
from tests.trainers.retromae.helpers import scifact_blocks


@pytest.fixture(scope="module", params=["bert", "roberta"])
def family(request, tiny_bert_encoder, tiny_roberta):
    return tiny_bert_encoder if request.param == "bert" else tiny_roberta


def _batch(folder, config: RetroMAEConfig, count: int = 4, length: int = 60):
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    collator = RetroMAECollator(tokenizer, config)
    return collator(
        scifact_blocks(tokenizer, count=count, length=length), seeds=list(range(count))
    ), tokenizer


def test_checkpoint_without_head_gets_a_tied_one(tiny_bert_encoder, caplog):
    with caplog.at_level("INFO"):
        lm = load_masked_lm(tiny_bert_encoder)
    assert "has no MLM head" in caplog.text
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    assert torch.count_nonzero(lm.cls.predictions.bias) == 0


def test_roberta_checkpoint_keeps_its_head(tiny_roberta, caplog):
    with caplog.at_level("INFO"):
        lm = load_masked_lm(tiny_roberta)
    assert "has no MLM head" not in caplog.text
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight


def test_only_the_decoder_layer_is_new(family):
    config = RetroMAEConfig(corpus="unused")
    model = RetroMAEModel.from_pretrained(family, config)
    assert model.embeddings is model.encoder.embeddings
    own = {id(p) for p in model.parameters()}
    lm = {id(p) for p in model.lm.parameters()}
    decoder = {id(p) for p in model.decoder.parameters()}
    assert own == lm | decoder


def test_query_stream_cannot_see_its_own_target(family):
    """Changing the token at position i changes the decoder state of rows that see column i, never row i."""
    config = RetroMAEConfig(corpus="unused")
    torch.manual_seed(0)
    model = RetroMAEModel.from_pretrained(family, config).eval()
    batch, tokenizer = _batch(family, config)
    inputs = batch.inputs
    with torch.no_grad():
        sentence = model.encode(inputs["encoder_input_ids"], inputs["attention_mask"])[:, :1]
        before = model.decode(sentence, inputs["input_ids"], inputs["decoder_visible"])
        for position in (5, 23, 40):
            changed = inputs["input_ids"].clone()
            changed[0, position] = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" retrieval")[0])
            assert changed[0, position] != inputs["input_ids"][0, position]
            after = model.decode(sentence, changed, inputs["decoder_visible"])
            torch.testing.assert_close(after[0, position], before[0, position], rtol=0, atol=1e-6)
            seers = inputs["decoder_visible"][0, :, position].nonzero().flatten()
            seers = seers[seers != position]
            assert len(seers) > 5
            moved = (after[0, seers] - before[0, seers]).abs().amax(dim=-1)
            assert (moved > 1e-4).all(), "rows that see column i must react to its token"
            blind = (~inputs["decoder_visible"][0, :, position]).nonzero().flatten()
            torch.testing.assert_close(after[0, blind], before[0, blind], rtol=0, atol=1e-6)


def test_losses_are_sums_over_the_counted_items(family):
    config = RetroMAEConfig(corpus="unused")
    torch.manual_seed(0)
    model = RetroMAEModel.from_pretrained(family, config).eval()
    batch, tokenizer = _batch(family, config)
    with torch.no_grad():
        terms = model(**batch.inputs)
    assert set(terms) == set(batch.counts) == {"encoder_mlm", "decoder"}
    for name, term in terms.items():
        mean = float(term.total) / batch.counts[name]
        # Freshly initialised: about the entropy of a uniform guess over the vocabulary.
        assert abs(mean - math.log(len(tokenizer))) < 1.5, (name, mean)
        assert term.weight == 1.0


def test_dupmae_adds_weighted_bag_of_words(tiny_bert_encoder):
    config = RetroMAEConfig(corpus="unused", dupmae=True, bow_weight=0.25)
    torch.manual_seed(0)
    model = RetroMAEModel.from_pretrained(tiny_bert_encoder, config).eval()
    batch, _ = _batch(tiny_bert_encoder, config)
    with torch.no_grad():
        terms = model(**batch.inputs)
    assert set(terms) == set(batch.counts) == {"encoder_mlm", "decoder", "bow"}
    assert terms["bow"].weight == 0.25 and batch.counts["bow"] == 4
    assert float(terms["bow"].total) > 0


def test_bag_of_words_by_hand():
    logits = torch.tensor([[[9.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0], [0.0, 3.0, 0.5, 0.0]]])
    ids = torch.tensor([[0, 2, 1]])
    ordinary = torch.tensor([[False, True, True]])  # position 0 is [CLS]: its 9.0 must not count
    pooled = torch.tensor([0.0, 3.0, 2.0, 0.0])
    expected = -(0.5 * F.log_softmax(pooled, -1)[1] + 0.5 * F.log_softmax(pooled, -1)[2])
    torch.testing.assert_close(bag_of_words_sum(logits, ids, ordinary), expected)
    repeated = bag_of_words_sum(logits, torch.tensor([[0, 2, 2]]), ordinary)
    torch.testing.assert_close(repeated, -F.log_softmax(pooled, -1)[2])
