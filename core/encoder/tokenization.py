"""Formatting + tokenization in one step, with truncation that only ever cuts the text itself.

A tokenizer truncates the whole templated string. For templates with a suffix (LLaRA's
``{text}`` followed by a prompt and ``{eos}``, whose last token's state *is* the embedding) a
right cut drops exactly the part that matters, and a left cut drops the instruction prefix. Here an
over-long input keeps the template's prefix, its suffix and the tokenizer's special tokens, and
loses tokens from the end of the text. Runtime, ingest and fine-tuning all tokenize through this
class, so a model is trained on exactly what it is later served.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from transformers import PreTrainedTokenizerBase

from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSpec
from retrosearch.core.encoder.formatting import Formatter

log = logging.getLogger(__name__)


class TextTokenizer:
    """Token ids of queries and passages as ``spec`` formats them, at most ``max_length`` long."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, spec: EncoderSpec, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.formatter = Formatter(spec, bos=tokenizer.bos_token, eos=tokenizer.eos_token)
        self.max_length = max_length
        if not tokenizer.is_fast and (self.formatter.query_suffix or self.formatter.passage_suffix):
            log.warning("slow tokenizer: over-long inputs are cut from the %s, template included", tokenizer.truncation_side)

    def queries(self, texts: Iterable[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids of queries (query template applied)."""
        return self.formatted(self.formatter.queries(texts), len(self.formatter.query_suffix), max_length)

    def documents(self, docs: Sequence[Document], max_length: int | None = None) -> list[list[int]]:
        """Token ids of documents (title + text, passage template applied)."""
        return self.formatted(self.formatter.documents(docs), len(self.formatter.passage_suffix), max_length)

    def formatted(self, texts: Sequence[str], tail_chars: int = 0, max_length: int | None = None) -> list[list[int]]:
        """Token ids of already formatted texts whose last ``tail_chars`` characters must survive."""
        limit = min(max_length or self.max_length, self.max_length)
        if not self.tokenizer.is_fast:
            return self.tokenizer(list(texts), truncation=True, max_length=limit, return_attention_mask=False)["input_ids"]
        encoded = self.tokenizer(
            list(texts),
            truncation=False,
            return_attention_mask=False,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            verbose=False,
        )
        out = []
        for text, ids, offsets, special in zip(
            texts, encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True
        ):
            if len(ids) <= limit:
                out.append(ids)
                continue
            tail = _tail_tokens(offsets, special, len(text) - tail_chars)
            if tail >= limit:
                raise ValueError(f"max_length {limit} leaves no room for the text: the template alone takes {tail} tokens")
            out.append(ids[: limit - tail] + ids[len(ids) - tail :])
        return out


def _tail_tokens(offsets: Sequence[tuple[int, int]], special: Sequence[int], suffix_start: int) -> int:
    """How many final tokens belong to the template's suffix or are the tokenizer's end tokens."""
    count = 0
    for (start, _end), is_special in zip(reversed(offsets), reversed(special), strict=True):
        if not (is_special or start >= suffix_start):
            break
        count += 1
    return count
