"""Plain records and the mapping from a source's field names onto them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True, slots=True)
class Document:
    """One passage of a corpus; ``fields`` keeps any extra source fields asked for."""

    id: str
    text: str
    title: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Query:
    """One query of a collection."""

    id: str
    text: str


class FieldMap(BaseModel):
    """Which source fields hold the id, title and text (BEIR names by default).

    ``title`` may be None for corpora without titles; ``keep`` lists extra fields to carry along.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = "_id"
    text: str = "text"
    title: str | None = "title"
    keep: tuple[str, ...] = ()
