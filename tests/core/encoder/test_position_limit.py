"""How long an input a model takes: its positions (RoBERTa's offset included) and its tokenizer."""

from __future__ import annotations

from types import SimpleNamespace

from transformers import BertConfig, LlamaConfig, RobertaConfig

from retrosearch.core.encoder import position_limit


def test_position_tables_and_the_roberta_offset():
    assert position_limit(BertConfig(max_position_embeddings=128)) == 128
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(LlamaConfig(max_position_embeddings=2048)) == 2048


def test_the_tokenizer_limit_applies_when_smaller_and_sentinels_are_ignored():
    config = BertConfig(max_position_embeddings=512)
    assert position_limit(config, SimpleNamespace(model_max_length=256)) == 256
    # Tokenizers without a limit report a huge sentinel (int(1e30)); the positions decide then.
    assert position_limit(config, SimpleNamespace(model_max_length=int(1e30))) == 512
