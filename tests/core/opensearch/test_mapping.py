"""Score translation and index bodies (no server needed)."""

from __future__ import annotations

import pytest

from retrosearch.core.config import OpenSearchSettings
from retrosearch.core.index import IndexMeta
from retrosearch.core.opensearch.mapping import (
    index_body,
    meta_from_mapping,
    score_to_similarity,
    similarity_to_score,
    space_for,
)


@pytest.mark.parametrize("space", ["innerproduct", "cosinesimil", "l2"])
@pytest.mark.parametrize("similarity", [-0.9, -0.2, 0.0, 0.3, 0.999])
def test_score_formulas_invert(space, similarity):
    assert score_to_similarity(similarity_to_score(similarity, space), space) == pytest.approx(similarity)


def test_score_formulas_match_the_documented_values():
    assert similarity_to_score(0.5, "innerproduct") == pytest.approx(1.5)
    assert similarity_to_score(-1.0, "innerproduct") == pytest.approx(0.5)
    assert similarity_to_score(0.5, "cosinesimil") == pytest.approx(0.75)
    # unit vectors with cos 0.5 have squared L2 distance 1.0 -> score 1/(1+1)
    assert similarity_to_score(0.5, "l2") == pytest.approx(0.5)


def test_index_body_records_encoder_and_method():
    meta = IndexMeta(model_name="minilm", model_fingerprint="abc", dim=384, similarity="cosine")
    body = index_body(meta, OpenSearchSettings(hnsw_m=24, hnsw_ef_construction=128, shards=2, replicas=0))
    field = body["mappings"]["properties"]["embedding"]
    assert field == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": "innerproduct", "parameters": {"m": 24, "ef_construction": 128}},
    }
    assert body["settings"]["index"] == {"knn": True, "number_of_shards": 2, "number_of_replicas": 0}
    recorded = meta_from_mapping(body["mappings"], "x")
    assert recorded.model_fingerprint == "abc" and recorded.params["space_type"] == "innerproduct"
    with pytest.raises(ValueError, match="not built by RetroSearch"):
        meta_from_mapping({"properties": {}}, "foreign")


def test_faiss_engine_sets_ef_search_as_index_setting_and_dot_refuses_cosine_space():
    meta = IndexMeta(model_name="m", model_fingerprint="f", dim=8, similarity="dot")
    body = index_body(meta, OpenSearchSettings(engine="faiss", hnsw_ef_search=300))
    assert body["settings"]["index"]["knn.algo_param.ef_search"] == 300
    with pytest.raises(ValueError, match="does not rank like a dot-product encoder"):
        space_for(meta, OpenSearchSettings(space_type="cosinesimil"))


def test_int8_and_binary_encodings_map_to_byte_and_binary_fields_with_a_rescoring_field():
    meta = IndexMeta(model_name="m", model_fingerprint="f", dim=16, similarity="cosine")
    int8 = index_body(meta, OpenSearchSettings(knn_encoder="int8"))["mappings"]
    assert int8["properties"]["embedding"]["data_type"] == "byte"
    assert int8["properties"]["embedding"]["method"]["space_type"] == "innerproduct"
    assert int8["properties"]["embedding_float32"] == {"type": "binary"}
    params = meta_from_mapping(int8, "x").params
    assert params["knn_encoder"] == "int8" and params["rescore_field"] == "embedding_float32"
    binary = index_body(meta, OpenSearchSettings(knn_encoder="binary", vector_field="v"))["mappings"]
    assert binary["properties"]["v"]["data_type"] == "binary"
    assert binary["properties"]["v"]["method"]["space_type"] == "hamming"
    assert binary["properties"]["v"]["dimension"] == 16  # bits, packed 8 per byte by the writer
    assert meta_from_mapping(binary, "x").params["space_type"] == "hamming"
    with pytest.raises(ValueError, match="not a multiple of 8"):
        index_body(meta.model_copy(update={"dim": 12}), OpenSearchSettings(knn_encoder="binary"))
    with pytest.raises(ValueError, match="space 'l2' is not supported"):
        index_body(meta, OpenSearchSettings(knn_encoder="int8", space_type="l2"))
