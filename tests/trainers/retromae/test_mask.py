"""The masks: whole words for WordPiece, single tokens for BPE, and the decoder's attention matrix."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from retrosearch.trainers.retromae.config import RetroMAEConfig
from retrosearch.trainers.retromae.data import RetroMAECollator
from retrosearch.trainers.retromae.mask import IGNORE, VocabTables, decoder_visibility, word_index
from tests.trainers.retromae.helpers import scifact_blocks, with_specials


@pytest.fixture(scope="module", params=["bert", "roberta"])
def tokenizer(request, bert_tokenizer_dir, tiny_roberta):
    return AutoTokenizer.from_pretrained(str(bert_tokenizer_dir if request.param == "bert" else tiny_roberta))


def test_wordpiece_words_group_continuations(bert_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(bert_tokenizer_dir))
    tables = VocabTables.from_tokenizer(tokenizer)
    ids = torch.tensor(tokenizer("microstructural development of newborns")["input_ids"])
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    word, count = word_index(ids, tables)
    assert tables.whole_word
    assert word[0] == -1 and word[-1] == -1  # [CLS], [SEP]
    for i in range(2, len(tokens) - 1):
        same = tokens[i].startswith("##")
        assert (word[i] == word[i - 1]) == same, tokens
    assert count == 4


def test_bpe_masks_single_tokens(tiny_roberta):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_roberta))
    tables = VocabTables.from_tokenizer(tokenizer)
    ids = torch.tensor(
        tokenizer("Microstructural development of human newborn cerebral white matter")["input_ids"]
    )
    word, count = word_index(ids, tables)
    assert not tables.whole_word
    assert word[0] == -1 and word[-1] == -1  # <s>, </s>
    assert word[1:-1].tolist() == list(range(len(ids) - 2)) and count == len(ids) - 2
    with pytest.raises(ValueError, match="WordPiece"):
        VocabTables.from_tokenizer(tokenizer, masking="whole_word")


def test_decoder_matrix_properties(tokenizer):
    """Never itself, always the sentence slot, the configured share hidden on average."""
    tables = VocabTables.from_tokenizer(tokenizer)
    ratio = 0.5
    hidden_share = []
    for seed, block in enumerate(scifact_blocks(tokenizer, count=12, length=126)):
        ids = with_specials(tokenizer, block)
        word, count = word_index(ids, tables)
        visible = decoder_visibility(
            word, count, ratio, pool=128, generator=torch.Generator().manual_seed(seed)
        )
        length = len(ids)
        assert visible.shape == (length, length)
        assert visible[:, 0].all(), "a row lost the sentence embedding"
        assert not visible.diagonal()[1:].any(), "a row sees its own token"
        candidates = word >= 0
        off_diagonal = ~torch.eye(length, dtype=torch.bool) & candidates[None, :]
        hidden_share.append(float((~visible)[off_diagonal].float().mean()))
        # Rows draw different masks: position-specific, not one mask for all rows.
        assert len({tuple(row.tolist()) for row in visible[1:]}) > length // 2
    assert abs(sum(hidden_share) / len(hidden_share) - ratio) < 0.03


def test_encoder_mask_ratio_specials_and_corruption(tokenizer):
    config = RetroMAEConfig(corpus="unused", max_length=128, encoder_mask_ratio=0.3)
    collator = RetroMAECollator(tokenizer, config)
    blocks = scifact_blocks(tokenizer, count=16, length=126)
    batch = collator(blocks, seeds=list(range(16)))
    inputs = batch.inputs
    real = inputs["attention_mask"].bool()
    special = collator.tables.special[inputs["input_ids"]]
    masked = inputs["encoder_labels"] != IGNORE
    assert not (masked & special).any()
    ordinary = real & ~special
    assert abs(float(masked.sum()) / float(ordinary.sum()) - 0.3) < 0.02
    # Labels hold the original tokens; about 80% of the masked inputs are the mask token.
    assert torch.equal(inputs["encoder_labels"][masked], inputs["input_ids"][masked])
    share_mask_token = float((inputs["encoder_input_ids"][masked] == tokenizer.mask_token_id).float().mean())
    assert 0.72 < share_mask_token < 0.88
    assert torch.equal(inputs["encoder_input_ids"][~masked], inputs["input_ids"][~masked])
    # Every ordinary token is a decoder target; specials and padding are not.
    assert torch.equal(inputs["decoder_labels"] != IGNORE, ordinary)
    assert batch.counts == {"encoder_mlm": float(masked.sum()), "decoder": float(ordinary.sum())}


def test_whole_words_are_masked_whole(bert_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(bert_tokenizer_dir))
    collator = RetroMAECollator(tokenizer, RetroMAEConfig(corpus="unused", max_length=128))
    for seed, block in enumerate(scifact_blocks(tokenizer, count=8, length=126)):
        example = collator.example(block, seed)
        word, _ = word_index(example["input_ids"], collator.tables)
        masked = example["encoder_labels"] != IGNORE
        for w in word[masked].unique():
            assert masked[word == w].all(), "a word was masked in part"
        # The decoder rows hide whole words too (apart from the row's own token).
        visible = example["decoder_visible"]
        for row in range(1, len(word), 17):
            hidden = ~visible[row]
            hidden[row] = False
            for w in word[hidden].unique():
                assert hidden[word == w].all() or (word == w)[row]


def test_same_seed_same_masks_padding_rows_not_empty(tokenizer):
    collator = RetroMAECollator(tokenizer, RetroMAEConfig(corpus="unused", max_length=128))
    blocks = scifact_blocks(tokenizer, count=3, length=126)
    blocks[1] = blocks[1][:20]
    one = collator(blocks, seeds=[7, 8, 9])
    two = collator([blocks[2], blocks[0]], seeds=[9, 7])  # other batch, other order: same example, same masks
    width = len(blocks[2]) + 2
    assert torch.equal(
        one.inputs["decoder_visible"][2, :width, :width], two.inputs["decoder_visible"][0, :width, :width]
    )
    assert torch.equal(one.inputs["encoder_input_ids"][0], two.inputs["encoder_input_ids"][1])
    assert one.inputs["decoder_visible"].any(dim=-1).all(), "an attention row is empty (NaN in SDPA)"
    other = collator(blocks, seeds=[1, 2, 3])
    assert not torch.equal(one.inputs["encoder_input_ids"], other.inputs["encoder_input_ids"])
