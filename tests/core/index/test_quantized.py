"""Quantized FAISS indices: save/load round trips, rescoring back to exact search on real vectors,
the rescoring store on disk, and the memory and disk they report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.index import IndexMeta, IndexMismatchError, create_index, load_index
from retrosearch.core.index.faiss_index import RESCORE_STORE

QUANTIZED = [f"faiss-{kind}" for kind in RESCORE_STORE]


def _exact_top(embedded, k: int) -> list[list[str]]:
    order = np.argsort(-(embedded.query_vectors @ embedded.vectors.T), axis=1, kind="stable")[:, :k]
    return [[embedded.ids[j] for j in row] for row in order]


def _built(embedded, backend: str, **faiss):
    index = create_index(backend, embedded.meta, Settings(faiss=FaissSettings(use_gpu="never", **faiss)))
    index.add(embedded.ids, embedded.vectors)
    return index


@pytest.mark.parametrize("backend", QUANTIZED)
def test_save_load_search_round_trip(scifact_embedded, tmp_path, backend):
    index = _built(scifact_embedded, backend)
    before = index.search(scifact_embedded.query_vectors, 10)
    index.save(tmp_path / "idx")
    saved = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert saved["backend"] == backend and saved["params"]["rescore_store"] == RESCORE_STORE[backend[6:]]
    store = np.load(tmp_path / "idx" / "rescore.npy", mmap_mode="r")
    assert store.shape == scifact_embedded.vectors.shape
    assert store.dtype == (np.float32 if RESCORE_STORE[backend[6:]] == "float32" else np.uint8)

    loaded = load_index(tmp_path / "idx", Settings())
    assert loaded.meta.backend == backend and loaded.count() == len(scifact_embedded.ids)
    assert isinstance(loaded._store.rows, np.memmap)  # searched from the file, not read into memory
    after = loaded.search(scifact_embedded.query_vectors, 10)
    assert after.ids == before.ids
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-5)
    # the encoder check is the one every index makes
    other = IndexMeta(**{**scifact_embedded.meta.model_dump(), "model_fingerprint": "f" * 64})
    with pytest.raises(IndexMismatchError, match="refusing to search"):
        loaded.check_query_encoder(other)


@pytest.mark.parametrize("backend", ["faiss-int8", "faiss-int8-hnsw"])
def test_int8_rescoring_restores_exact_order(scifact_embedded, backend):
    """Rescored against the float32 store, the hits are exact search's, in its order, with its scores."""
    exact = _exact_top(scifact_embedded, 10)
    hits = _built(scifact_embedded, backend, oversample=10).search(scifact_embedded.query_vectors, 10)
    assert hits.ids == exact
    truth = np.sort(scifact_embedded.query_vectors @ scifact_embedded.vectors.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(hits.scores, truth, rtol=1e-5)


@pytest.mark.parametrize("backend", ["faiss-binary", "faiss-binary-hnsw"])
def test_binary_rescoring_recovers_what_sign_bits_lose(scifact_embedded, backend):
    """Sign bits alone miss part of exact search's top 10; rescoring oversampled candidates against the
    int8 store brings back exact search's top 10 as a set, all but a near-tie at rank 10 in 40 queries
    (int8 scores are close to exact ones, not equal)."""
    exact = _exact_top(scifact_embedded, 10)
    index = _built(scifact_embedded, backend, oversample=10)

    def overlap(ids: list[list[str]]) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))

    plain, positions = index.search_positions(scifact_embedded.query_vectors, 10, rescore=False)
    codes_only = overlap([[scifact_embedded.ids[p] for p in row] for row in positions])
    rescored = index.search(scifact_embedded.query_vectors, 10)
    assert codes_only < 0.9
    assert overlap(rescored.ids) >= 0.98
    assert np.all(plain <= 1.0) and np.all(plain >= -1.0)  # the share of agreeing signs as a similarity


def test_more_oversampling_never_loses_recall(scifact_embedded):
    exact = _exact_top(scifact_embedded, 10)
    index = _built(scifact_embedded, "faiss-binary")
    recalls = []
    for oversample in (1, 2, 4, 10):
        _, positions = index.search_positions(scifact_embedded.query_vectors, 10, oversample=oversample)
        found = [[scifact_embedded.ids[p] for p in row] for row in positions]
        recalls.append(np.mean([len(set(a) & set(b)) for a, b in zip(found, exact)]))
    assert recalls == sorted(recalls) and recalls[-1] > recalls[0]


def test_memory_and_disk_per_vector(scifact_embedded, tmp_path):
    n, dim = scifact_embedded.vectors.shape
    float32 = _built(scifact_embedded, "faiss-flat").footprint()
    int8 = _built(scifact_embedded, "faiss-int8").footprint()
    binary = _built(scifact_embedded, "faiss-binary").footprint()
    assert float32.vectors == int8.vectors == binary.vectors == n
    assert float32.per_vector(float32.memory_bytes) == pytest.approx(4 * dim, rel=0.01)
    assert int8.per_vector(int8.memory_bytes) == pytest.approx(dim, rel=0.05)  # 4x less in memory
    assert binary.per_vector(binary.memory_bytes) == pytest.approx(dim / 8, rel=0.1)  # 32x less
    assert int8.per_vector(int8.rescore_bytes) == 4 * dim and binary.per_vector(binary.rescore_bytes) == dim
    assert int8.disk_bytes == int8.memory_bytes + int8.rescore_bytes
    assert "rescoring store" in binary.describe() and "B/vector" in float32.describe()
    index = _built(scifact_embedded, "faiss-binary")
    index.save(tmp_path / "b")
    on_disk = sum((tmp_path / "b" / name).stat().st_size for name in ("index.faiss", "rescore.npy"))
    assert on_disk == pytest.approx(binary.disk_bytes, rel=0.05)


def test_binary_needs_a_dimension_divisible_by_8():
    meta = IndexMeta(model_name="m", model_fingerprint="abc", dim=12, similarity="cosine")
    with pytest.raises(ValueError, match="divisible by 8, got 12"):
        create_index("faiss-binary", meta)


@pytest.mark.parametrize("backend", ["faiss-int8-hnsw", "faiss-binary"])
def test_concurrent_first_searches_equal_serial_ones(scifact_embedded, backend):
    """Concurrent searches, the very first ones included (they join the store's appended rows),
    return what serial searches return afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.core.index.test_concurrent_search import _hammer

    queries = scifact_embedded.query_vectors
    fresh = _built(scifact_embedded, backend)
    fresh._store.append(np.zeros((0, queries.shape[1]), np.float32))  # a second chunk still to join
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: fresh.search(queries[i : i + 1], 10).ids, range(len(queries))))
    assert len(fresh._store) == len(scifact_embedded.ids)  # joined once, not once per thread
    assert got == [fresh.search(queries[i : i + 1], 10).ids for i in range(len(queries))]
    _hammer(fresh, queries)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_rescoring_in_many_small_blocks_equals_one_direct_computation(monkeypatch, dtype):
    from retrosearch.core.index import rescoring

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16), dtype=np.float32)
    queries = rng.standard_normal((37, 16), dtype=np.float32)
    positions = rng.integers(0, 300, (37, 20))
    positions[3, 5:] = -1  # a query with fewer candidates than the width
    store = rescoring.RescoreStore(16, dtype)
    store.append(vectors)
    stored = store.vectors(np.arange(300))
    direct = np.where(positions >= 0, np.einsum("qcd,qd->qc", stored[np.maximum(positions, 0)], queries), -np.inf)
    expected = np.sort(direct, axis=1)[:, ::-1][:, :7]
    monkeypatch.setattr(rescoring, "_BLOCK_BYTES", 16 * 20 * 4 * 3)  # three queries a block
    scores, found = store.rescore(queries, positions, 7)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert (found[3, 5:] == -1).all() and np.isneginf(scores[3, 5:]).all()
    ok = found >= 0  # and each hit's score is its own row's
    np.testing.assert_allclose((stored[found[ok]] * np.repeat(queries, 7, axis=0)[ok.ravel()]).sum(1), scores[ok],
                               rtol=1e-5)
