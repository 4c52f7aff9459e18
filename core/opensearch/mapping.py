"""k-NN index bodies and the translation between OpenSearch scores and the encoder's similarity.

OpenSearch turns each space's distance into a positive ``_score``; the formulas (k-NN plugin,
``SpaceType``; the same for the lucene and faiss engines) and their inverses are:

=============  ==============================  =========================================
space          ``_score`` from the vectors     encoder similarity from ``_score``
=============  ==============================  =========================================
innerproduct   ``1 + ip`` if ip >= 0,          ``s - 1`` if s >= 1, else ``1 - 1/s``
               ``1 / (1 - ip)`` otherwise
cosinesimil    ``(1 + cos) / 2``               ``2 s - 1``
l2             ``1 / (1 + d2)`` (d2 squared)   ``1 - d2 / 2`` with ``d2 = 1/s - 1``
                                               (cosine; only meaningful for unit vectors)
=============  ==============================  =========================================

A ``binary`` field (``knn_encoder`` binary) is searched in the ``hamming`` space, scored
``1 / (1 + h)`` for a Hamming distance ``h``; a ``byte`` field (``knn_encoder`` int8) scores the
inner product of its codes by the innerproduct formula. What those mean for the encoder's vectors
depends on the codes (``retrosearch.core.index.opensearch_codes``).

The index records the encoder it was built with in the mapping's ``_meta`` so a search with a
different encoder can be refused.
"""

from __future__ import annotations

from typing import Any

from retrosearch.core.config import OpenSearchSettings
from retrosearch.core.vector_space import IndexMeta

SpaceType = str
# Stored and indexed for lexical search beside the vector.
TEXT_FIELDS = ("title", "text")
# The k-NN field's data_type of each of our own encodings (``knn_encoder``), named like the FAISS kinds.
DATA_TYPES = {"int8": "byte", "binary": "binary"}


def rescore_field(vector_field: str) -> str:
    """The field beside a byte or binary k-NN field that keeps the float32 vectors for rescoring."""
    return f"{vector_field}_float32"


def space_for(meta: IndexMeta, settings: OpenSearchSettings) -> SpaceType:
    """The k-NN space for an encoder: inner product unless configured otherwise.

    ``l2`` and ``cosinesimil`` only rank like the encoder when its vectors have unit length.
    """
    space = settings.space_type or "innerproduct"
    if space != "innerproduct" and meta.similarity == "dot":
        raise ValueError(f"space {space!r} does not rank like a dot-product encoder; use innerproduct")
    return space


def score_to_similarity(score: float, space: SpaceType) -> float:
    """Invert OpenSearch's score formula for ``space`` (see the module docstring)."""
    if space == "innerproduct":
        return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
    if space == "cosinesimil":
        return 2.0 * score - 1.0
    if space == "l2":
        return 1.0 - (1.0 / score - 1.0) / 2.0
    raise ValueError(f"unknown space type {space!r}")


def similarity_to_score(similarity: float, space: SpaceType) -> float:
    """OpenSearch's score for a similarity (to turn a similarity threshold into ``min_score``)."""
    if space == "innerproduct":
        return 1.0 + similarity if similarity >= 0 else 1.0 / (1.0 - similarity)
    if space == "cosinesimil":
        return (1.0 + similarity) / 2.0
    if space == "l2":
        return 1.0 / (1.0 + 2.0 * (1.0 - similarity))
    raise ValueError(f"unknown space type {space!r}")


def index_body(meta: IndexMeta, settings: OpenSearchSettings, text_fields: tuple[str, ...] = TEXT_FIELDS) -> dict[str, Any]:
    """Settings and mappings of a k-NN index for vectors described by ``meta``."""
    space = space_for(meta, settings)
    method: dict[str, Any] = {
        "name": "hnsw",
        "engine": settings.engine,
        "space_type": space,
        "parameters": {"m": settings.hnsw_m, "ef_construction": settings.hnsw_ef_construction},
    }
    index_settings: dict[str, Any] = {
        "knn": True,
        "number_of_shards": settings.shards,
        "number_of_replicas": settings.replicas,
    }
    if settings.engine != "lucene" and settings.hnsw_ef_search:
        index_settings["knn.algo_param.ef_search"] = settings.hnsw_ef_search
    params = {**meta.params, "space_type": space}
    field: dict[str, Any] = {"type": "knn_vector", "dimension": meta.dim, "method": method}
    properties: dict[str, Any] = {settings.vector_field: field,
                                  **{name: {"type": "text"} for name in text_fields}}
    encoder = settings.knn_encoder
    if encoder == "sq":
        if settings.engine != "lucene":
            raise ValueError(f"knn_encoder sq (Lucene's scalar quantizer) needs engine lucene, "
                             f"not {settings.engine}")
        method["parameters"]["encoder"] = {"name": "sq"}
    elif encoder in DATA_TYPES:
        if encoder == "int8" and space != "innerproduct":
            raise ValueError(f"knn_encoder int8 ranks by the inner product of its codes; space {space!r} "
                             "is not supported with it (use innerproduct)")
        if encoder == "binary":
            if meta.dim % 8:
                raise ValueError(f"knn_encoder binary packs 8 dimensions per byte; dimension {meta.dim} "
                                 "is not a multiple of 8")
            # Bits compare by Hamming distance only; the encoder's similarity comes back by rescoring.
            method["space_type"] = params["space_type"] = "hamming"
        field["data_type"] = DATA_TYPES[encoder]
        params["rescore_field"] = rescore_field(settings.vector_field)
        # The float32 vectors for rescoring: base64 in _source, neither indexed nor in doc values.
        properties[params["rescore_field"]] = {"type": "binary"}
    if encoder != "none":
        params["knn_encoder"] = encoder
    recorded = meta.model_copy(update={"backend": "opensearch", "params": params})
    return {
        "settings": {"index": index_settings},
        "mappings": {"_meta": {"retrosearch": recorded.model_dump()}, "properties": properties},
    }


def meta_from_mapping(mapping: dict[str, Any], index: str) -> IndexMeta:
    """The :class:`IndexMeta` recorded in an index's mapping, or a clear error if there is none."""
    recorded = (mapping.get("_meta") or {}).get("retrosearch")
    if not recorded:
        raise ValueError(f"OpenSearch index {index!r} was not built by RetroSearch (no _meta.retrosearch in its mapping)")
    return IndexMeta.model_validate(recorded)
