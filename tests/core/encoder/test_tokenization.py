"""Truncation cuts the text, never the template around it or the tokenizer's special tokens."""

from __future__ import annotations

import pytest

from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSpec
from retrosearch.core.encoder.runtime import prepare_tokenizer
from retrosearch.core.encoder.tokenization import TextTokenizer

LONG = " ".join(["the cell protein"] * 40)  # 120 words


def _tokenizers(folder, **spec_fields):
    spec = EncoderSpec(**spec_fields)
    tokenizer = prepare_tokenizer(folder, spec)
    return tokenizer, TextTokenizer(tokenizer, spec, max_length=16)


def test_long_passage_keeps_prefix_suffix_and_special_tokens(tiny_bert):
    tokenizer, text_tokenizer = _tokenizers(tiny_bert, passage_template="query: {text} a b c")
    [ids] = text_tokenizer.documents([Document(id="d", text=LONG)])

    def pieces(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prefix, suffix, body = pieces("query:"), pieces("a b c"), pieces(LONG)
    room = 16 - 2 - len(prefix) - len(suffix)
    assert room > 0
    expected = [tokenizer.cls_token_id, *prefix, *body[:room], *suffix, tokenizer.sep_token_id]
    assert ids == expected
    # What the tokenizer's own right cut would have done: the suffix is gone.
    plain = tokenizer(text_tokenizer.formatter.passage(LONG), truncation=True, max_length=16)["input_ids"]
    assert plain[-1 - len(suffix) : -1] != suffix


def test_short_inputs_and_templates_without_suffix_tokenize_as_the_tokenizer_does(tiny_bert):
    tokenizer, text_tokenizer = _tokenizers(tiny_bert, query_template="{text}")
    assert text_tokenizer.queries(["the cell"]) == [tokenizer("the cell")["input_ids"]]
    # No suffix: a plain right cut, as the tokenizer's own truncation gives.
    assert text_tokenizer.queries([LONG]) == [tokenizer(LONG, truncation=True, max_length=16)["input_ids"]]
    # A shorter limit per call (fine-tuning's query length) is honoured, never a longer one.
    assert len(text_tokenizer.queries([LONG], max_length=8)[0]) == 8
    assert len(text_tokenizer.queries([LONG], max_length=64)[0]) == 16


def test_a_template_longer_than_max_length_is_an_error(tiny_bert):
    _, text_tokenizer = _tokenizers(tiny_bert, passage_template="{text} " + "a " * 20)
    with pytest.raises(ValueError, match="leaves no room for the text"):
        text_tokenizer.documents([Document(id="d", text=LONG)])
