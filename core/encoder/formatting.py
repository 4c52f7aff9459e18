"""Query and passage formatting: instruction prefixes and prompt templates around the text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSpec


class Formatter:
    """Applies an :class:`EncoderSpec`'s templates; ``{eos}``/``{bos}`` become the tokenizer's tokens."""

    def __init__(self, spec: EncoderSpec, bos: str | None = None, eos: str | None = None) -> None:
        self.spec = spec
        specials = {"{bos}": bos or "", "{eos}": eos or ""}
        self._query = self._bind(spec.query_template, specials)
        self._passage = self._bind(spec.passage_template, specials)

    @staticmethod
    def _bind(template: str, specials: dict[str, str]) -> tuple[str, str]:
        for slot, token in specials.items():
            template = template.replace(slot, token)
        before, _, after = template.partition("{text}")
        return before, after

    @property
    def query_suffix(self) -> str:
        """What the query template puts after the text."""
        return self._query[1]

    @property
    def passage_suffix(self) -> str:
        """What the passage template puts after the text."""
        return self._passage[1]

    def query(self, text: str) -> str:
        """The string the model sees for a query."""
        return f"{self._query[0]}{text}{self._query[1]}"

    def passage(self, text: str, title: str = "") -> str:
        """The string the model sees for a passage (title joined in front when present)."""
        body = f"{title}{self.spec.title_separator}{text}" if title else text
        return f"{self._passage[0]}{body}{self._passage[1]}"

    def queries(self, texts: Iterable[str]) -> list[str]:
        """Format many queries."""
        return [self.query(t) for t in texts]

    def documents(self, docs: Sequence[Document]) -> list[str]:
        """Format many documents."""
        return [self.passage(d.text, d.title) for d in docs]
