"""The search and ingest pipelines that make an index use our encoder inside OpenSearch.

* The search pipeline gives ``neural`` queries our query model by default
  (``neural_query_enricher``) and combines the parts of a ``hybrid`` query
  (``normalization-processor``: min-max normalised, weighted arithmetic mean; the first weight is
  the lexical part's, the second the dense part's).
* The ingest pipeline embeds documents written to the index without a vector: it joins title and
  text exactly as our own ingestion does (``title + title_separator + text``), has the passage
  model embed that, and drops the joined text again. Our own bulk loads carry vectors and bypass it.

Both become the index's defaults, and the index's mapping records the model ids (``_meta``), so
our own ``neural`` searches find them.
"""

from __future__ import annotations

from typing import Any

from opensearchpy import NotFoundError, OpenSearch

ML_META_KEY = "retrosearch_ml"
# The joined title and text exist only between the script and the embedding processor.
PASSAGE_FIELD = "_retrosearch_passage"

_JOIN_SCRIPT = """
if (ctx.containsKey(params.vector_field) && ctx[params.vector_field] != null) { return; }
String title = ctx.containsKey('title') && ctx.title != null ? ctx.title.toString() : '';
String text = ctx.containsKey('text') && ctx.text != null ? ctx.text.toString() : '';
if (title.isEmpty() && text.isEmpty()) { return; }
ctx[params.passage_field] = title.isEmpty() ? text : title + params.separator + text;
""".strip()


def search_pipeline_name(index: str) -> str:
    """The index's default search pipeline."""
    return f"{index}-retrosearch-search"


def ingest_pipeline_name(index: str) -> str:
    """The index's default ingest pipeline."""
    return f"{index}-retrosearch-ingest"


NORMALIZATIONS = ("min_max", "l2")


def hybrid_pipeline_name(dense_weight: float, technique: str = "min_max") -> str:
    """A shared search pipeline combining hybrid parts with this normalisation and dense weight."""
    return f"retrosearch-hybrid-{technique.replace('_', '')}-{round(dense_weight * 1000):04d}"


def normalization_processor(dense_weight: float, technique: str = "min_max") -> dict[str, Any]:
    """Per-query normalisation (``min_max`` or ``l2``) and a weighted mean of [lexical, dense] scores."""
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"the hybrid dense weight must be within [0, 1], got {dense_weight}")
    if technique not in NORMALIZATIONS:
        raise ValueError(f"unknown hybrid normalization {technique!r}; choose one of {', '.join(NORMALIZATIONS)}")
    weights = [round(1.0 - dense_weight, 6), round(dense_weight, 6)]
    return {
        "normalization-processor": {
            "normalization": {"technique": technique},
            "combination": {"technique": "arithmetic_mean", "parameters": {"weights": weights}},
        }
    }


def search_pipeline_body(
    query_model_id: str | None, vector_field: str, dense_weight: float, technique: str = "min_max"
) -> dict[str, Any]:
    """Default model for ``neural`` queries (when given) and the hybrid score combination."""
    body: dict[str, Any] = {
        "description": "RetroSearch: neural queries use our encoder; hybrid scores are normalised and weighted",
        "phase_results_processors": [normalization_processor(dense_weight, technique)],
    }
    if query_model_id:
        body["request_processors"] = [
            {"neural_query_enricher": {"default_model_id": query_model_id,
                                       "neural_field_default_id": {vector_field: query_model_id}}}
        ]
    return body


def ingest_pipeline_body(passage_model_id: str, vector_field: str, title_separator: str) -> dict[str, Any]:
    """Embed title + text of documents that arrive without a vector, as our ingestion would."""
    return {
        "description": "RetroSearch: embed documents without a vector with our encoder's passage template",
        "processors": [
            {"script": {"lang": "painless", "source": _JOIN_SCRIPT,
                        "params": {"vector_field": vector_field, "passage_field": PASSAGE_FIELD,
                                   "separator": title_separator}}},
            {"text_embedding": {"model_id": passage_model_id, "field_map": {PASSAGE_FIELD: vector_field},
                                "if": f"ctx.{PASSAGE_FIELD} != null"}},
            {"remove": {"field": PASSAGE_FIELD, "ignore_missing": True}},
        ],
    }


def ensure_hybrid_pipeline(client: OpenSearch, dense_weight: float, technique: str = "min_max") -> str:
    """The shared hybrid pipeline for a weight, created when missing or different; its name.

    Reading first lets a user who may only read pipelines (a searcher) use the ones an
    administrator's ``opensearch connect`` made, and spares a cluster-state update per hybrid search.
    """
    name = hybrid_pipeline_name(dense_weight, technique)
    body = {
        "description": f"RetroSearch hybrid: {technique} normalisation, dense weight {dense_weight}",
        "phase_results_processors": [normalization_processor(dense_weight, technique)],
    }
    try:
        current = client.search_pipeline.get(id=name).get(name, {})
    except NotFoundError:
        current = {}
    if current.get("phase_results_processors") != body["phase_results_processors"]:
        client.search_pipeline.put(id=name, body=body)
    return name


def install(
    client: OpenSearch,
    index: str,
    query_model_id: str,
    passage_model_id: str,
    vector_field: str,
    title_separator: str,
    dense_weight: float,
    service_url: str,
    technique: str = "min_max",
) -> dict[str, str]:
    """Create both pipelines, make them the index's defaults and record the models in its mapping."""
    search_name, ingest_name = search_pipeline_name(index), ingest_pipeline_name(index)
    client.search_pipeline.put(id=search_name, body=search_pipeline_body(query_model_id, vector_field, dense_weight, technique))
    client.ingest.put_pipeline(id=ingest_name,
                               body=ingest_pipeline_body(passage_model_id, vector_field, title_separator))
    # The hybrid pipeline of the default weight too: searchers may use it but not create it.
    ensure_hybrid_pipeline(client, dense_weight, technique)
    client.indices.put_settings(index=index, body={"index": {"search.default_pipeline": search_name,
                                                             "default_pipeline": ingest_name}})
    meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
    # _meta is replaced as a whole on update, so the encoder's record is written back with it.
    meta[ML_META_KEY] = {"query_model_id": query_model_id, "passage_model_id": passage_model_id,
                         "service_url": service_url, "search_pipeline": search_name, "ingest_pipeline": ingest_name}
    client.indices.put_mapping(index=index, body={"_meta": meta})
    return {"search": search_name, "ingest": ingest_name}


def recorded_models(mapping: dict[str, Any]) -> dict[str, str]:
    """What :func:`install` recorded in an index's mapping (empty when it was never connected)."""
    return dict((mapping.get("_meta") or {}).get(ML_META_KEY) or {})
