"""The record of which encoder made a set of vectors, and the check that two records agree.

The encoder writes it (:meth:`Encoder.index_meta`), every index keeps it beside its vectors and
checks it before a search: vectors of two models live in unrelated spaces, and mixing them gives
plausible-looking nonsense rather than an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from retrosearch.core.config import Similarity
from retrosearch.core.errors import UserError


class IndexMismatchError(UserError, ValueError):
    """The encoder used for a query is not the one the index was built with."""


class IndexMeta(BaseModel):
    """What an index was built with; saved beside it and checked before every search."""

    model_config = ConfigDict(extra="allow")

    model_name: str
    model_fingerprint: str
    dim: int
    similarity: Similarity
    backend: str = ""
    params: dict[str, Any] = {}

    def check_compatible(self, other: "IndexMeta") -> None:
        """Raise :class:`IndexMismatchError` unless ``other`` encodes into the same space."""
        problems = []
        same_model = other.model_name == self.model_name
        if other.dim != self.dim:
            hint = f" (the index was built with dimensions={self.dim})" if same_model else ""
            problems.append(f"dimension {other.dim} != {self.dim}{hint}")
        # The same model cut to another dimension has another fingerprint: the dimension says it all.
        if other.model_fingerprint != self.model_fingerprint and (other.dim == self.dim or not same_model):
            problems.append(
                f"model {other.model_name!r} ({other.model_fingerprint[:12]}) differs from the index's "
                f"{self.model_name!r} ({self.model_fingerprint[:12]})"
            )
        if other.similarity != self.similarity:
            problems.append(f"similarity {other.similarity} != {self.similarity}")
        if problems:
            raise IndexMismatchError("refusing to search: " + "; ".join(problems))
