"""Search bodies in OpenSearch's own query DSL, one per search mode.

=========  ==========================================================================
mode       query
=========  ==========================================================================
dense      ``knn`` with a vector our encoder computed (see OpenSearchIndex.knn_query)
neural     ``neural``: OpenSearch sends the text to the registered model (our service)
bm25       ``multi_match`` over title and text, ``best_fields`` with tie breaker 0.5:
           the BM25 set-up of the BEIR benchmark's lexical baseline
hybrid     ``hybrid`` of the bm25 query and a dense one, combined by a search pipeline
           with a normalization-processor
=========  ==========================================================================

A ``filter`` restricts every part before its top hits are taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def bm25_clause(text: str, text_fields: Sequence[str], filter: dict[str, Any] | None = None) -> dict[str, Any]:
    """Lexical relevance of ``text`` against the text fields (optionally filtered)."""
    match = {"multi_match": {"query": text, "fields": list(text_fields), "type": "best_fields", "tie_breaker": 0.5}}
    if not filter:
        return match
    return {"bool": {"must": [match], "filter": [filter]}}


def neural_clause(
    vector_field: str,
    text: str,
    k: int,
    model_id: str | None,
    filter: dict[str, Any] | None = None,
    method_parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``neural`` query: OpenSearch embeds ``text`` with ``model_id`` (or the pipeline's default).

    ``method_parameters`` (e.g. HNSW ``ef_search``) as for a ``knn`` query, so both search alike.
    """
    clause: dict[str, Any] = {"query_text": text, "k": k}
    if model_id:
        clause["model_id"] = model_id
    if filter:
        clause["filter"] = filter
    if method_parameters:
        clause["method_parameters"] = method_parameters
    return {"neural": {vector_field: clause}}


def hybrid_clause(lexical: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    """Both parts, lexical first (the order the pipeline's weights follow)."""
    return {"hybrid": {"queries": [lexical, dense]}}


def search_body(query: dict[str, Any], k: int, fields: Sequence[str] | None) -> dict[str, Any]:
    """The request around a query: ``k`` hits with the asked-for stored fields."""
    return {"size": k, "query": query, "_source": list(fields) if fields else False}
