"""FAISS backends: exact results, save/load round trips, idempotent adds, encoder checks."""

from __future__ import annotations

import numpy as np
import pytest

from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.index import IndexMeta, IndexMismatchError, create_index, load_index
from retrosearch.core.index.faiss_index import FaissIndex


def _meta(dim=16, fingerprint="abc"):
    return IndexMeta(model_name="m", model_fingerprint=fingerprint, dim=dim, similarity="cosine")


def _unit(rng, n, dim=16):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["faiss-flat", "faiss-hnsw", "faiss-ivfpq"])
def test_save_load_round_trip(tmp_path, backend):
    rng = np.random.default_rng(0)
    docs, queries = _unit(rng, 600), _unit(rng, 5)
    ids = [f"doc-{i}" for i in range(len(docs))]
    settings = Settings(faiss=FaissSettings(ivf_nlist=8, ivf_nprobe=8, pq_m=4))
    index = create_index(backend, _meta(), settings)
    assert index.add(ids, docs) == 600
    before = index.search(queries, 10)
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx", settings)
    after = loaded.search(queries, 10)
    assert loaded.count() == 600 and loaded.meta.backend == backend
    assert after.ids == before.ids
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-6)


def test_flat_is_exact_inner_product():
    rng = np.random.default_rng(1)
    docs, queries = _unit(rng, 200), _unit(rng, 7)
    index = FaissIndex(_meta(), "flat")
    index.add([str(i) for i in range(200)], docs)
    hits = index.search(queries, 5)
    truth = np.argsort(-(queries @ docs.T), axis=1)[:, :5]
    assert hits.ids == [[str(j) for j in row] for row in truth]
    np.testing.assert_allclose(hits.scores, np.take_along_axis(queries @ docs.T, truth, axis=1), rtol=1e-5)


def test_adding_known_ids_is_a_no_op():
    rng = np.random.default_rng(2)
    index = FaissIndex(_meta(), "hnsw")
    vectors = _unit(rng, 10)
    assert index.add([str(i) for i in range(10)], vectors) == 10
    assert index.add([str(i) for i in range(5, 15)], _unit(rng, 10)) == 5
    assert index.add(["a", "a"], _unit(rng, 2)) == 1
    assert index.count() == 16


def test_k_larger_than_index_and_empty_index():
    index = FaissIndex(_meta(dim=4), "flat")
    assert index.search(np.ones((2, 4), np.float32), 3).ids == [[], []]
    index.add(["x"], np.ones((1, 4), np.float32) / 2)
    assert index.search(np.ones((1, 4), np.float32), 10).ids == [["x"]]


def test_bad_shapes_and_kinds_are_refused():
    index = FaissIndex(_meta(dim=4), "flat")
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        index.add(["x"], np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="1 ids for 2 vectors"):
        index.add(["x"], np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="unknown FAISS index kind"):
        FaissIndex(_meta(), "lsh")
    with pytest.raises(ValueError, match="IVF-PQ needs at least"):
        FaissIndex(_meta(), "ivfpq", FaissSettings(ivf_nlist=64)).add(["a"], np.ones((1, 16), np.float32))
    index = FaissIndex(_meta(), "ivfpq", FaissSettings(ivf_nlist=4))
    with pytest.raises(ValueError, match=r"at least 2\*\*pq_nbits=256 training vectors"):
        index.add([str(i) for i in range(100)], np.ones((100, 16), np.float32))
    assert index.count() == 0  # a failed first add leaves no ids behind


def test_search_with_another_encoder_is_refused():
    index = FaissIndex(_meta(fingerprint="model-a"), "flat")
    index.check_query_encoder(_meta(fingerprint="model-a"))
    with pytest.raises(IndexMismatchError, match="refusing to search"):
        index.check_query_encoder(_meta(fingerprint="model-b"))
    with pytest.raises(IndexMismatchError, match="dimension 8 != 16"):
        index.check_query_encoder(_meta(dim=8, fingerprint="model-a"))
