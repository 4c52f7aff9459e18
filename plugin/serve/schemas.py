"""Request and response bodies of the query API (they are also its OpenAPI document).

Requests forbid unknown fields, so a misspelt option is an error that names it rather than a
silently ignored default. Limits that depend on the server's settings (texts per request,
characters per text, largest k) are checked by the routes, which know those settings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NonEmpty = Field(min_length=1)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_blank(texts: list[str], name: str) -> list[str]:
    for i, text in enumerate(texts):
        if not text.strip():
            raise ValueError(f"{name}[{i}] is empty")
    return texts


def _text_or_texts(value: str | list[str], name: str) -> str | list[str]:
    """A non-empty string, or a non-empty list of non-empty strings."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{name} is empty")
        return value
    if not value:
        raise ValueError(f"{name} is an empty list")
    return _no_blank(value, name)


class EmbedRequest(_Request):
    """Texts to embed, as queries (query template) or passages (passage template)."""

    texts: list[str] = Field(min_length=1, description="one or more non-empty texts")
    mode: Literal["query", "passage"] = "query"

    @field_validator("texts")
    @classmethod
    def _texts_not_blank(cls, texts: list[str]) -> list[str]:
        return _no_blank(texts, "texts")


class EmbedResponse(BaseModel):
    """One vector per text, in request order."""

    vectors: list[list[float]]
    model: str
    dim: int
    mode: Literal["query", "passage"]


class EmbeddingsRequest(_Request):
    """The OpenAI embeddings request (``input`` a string or a list of strings)."""

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0)
    user: str | None = None
    input_type: Literal["query", "passage"] | None = Field(
        None,
        description="extension (as in other retrieval-model servers): which template to apply; "
        "default the server's --embeddings-mode",
    )

    @field_validator("input")
    @classmethod
    def _input_not_blank(cls, value: str | list[str]) -> str | list[str]:
        return _text_or_texts(value, "input")

    @property
    def texts(self) -> list[str]:
        """The input as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    """One embedding: floats, or base64 of little-endian float32 (as OpenAI encodes them)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Tokens the request used (after the model's template and truncation)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    """The OpenAI embeddings response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class SearchRequest(_Request):
    """A dense search: query text(s), how many hits, an OpenSearch filter and stored fields."""

    query: str | list[str]
    k: int = Field(10, ge=1, description="hits per query (at most the server's --max-k)")
    filter: dict[str, Any] | None = Field(None, description="OpenSearch query clause restricting the hits")
    fields: list[str] | None = Field(None, description="stored fields to return with each hit")
    mode: Literal["dense", "neural", "bm25", "hybrid"] = Field(
        "dense",
        description="dense: our encoder's vector (any backend); OpenSearch only: neural (OpenSearch embeds the "
        "query with the connected model), bm25 (lexical), hybrid (bm25 + dense, normalised)",
    )
    hybrid_weight: float | None = Field(
        None, ge=0, le=1, description="share of the dense part in a hybrid score (default: the server's setting)"
    )
    hybrid_normalization: Literal["min_max", "l2"] | None = Field(
        None, description="per-query normalisation of each hybrid part (default: the server's setting)"
    )

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str | list[str]) -> str | list[str]:
        return _text_or_texts(value, "query")

    @property
    def queries(self) -> list[str]:
        """The query or queries as a list."""
        return [self.query] if isinstance(self.query, str) else list(self.query)


class Hit(BaseModel):
    """One search result."""

    id: str
    score: float = Field(description="the encoder's similarity (dense, neural), BM25 (bm25) or the normalised "
                         "combination (hybrid)")
    rank: int
    fields: dict[str, Any] | None = None


class QueryHits(BaseModel):
    """The hits of one query."""

    query: str
    hits: list[Hit]


class SearchResponse(BaseModel):
    """Hits per query, in request order; ``hits`` repeats the first query's when one was sent."""

    results: list[QueryHits]
    hits: list[Hit] | None = None
    model: str
    k: int
    took_ms: float


class ErrorBody(BaseModel):
    """What went wrong, OpenAI style: ``param`` names the field at fault."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    error: ErrorBody
