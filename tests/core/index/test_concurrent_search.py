"""FAISS indices searched from many threads at once give exactly the hits of serial calls; search
parameters and the GPU copy are fixed at build/load time, never touched by a search."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.index import UnsupportedSearchOption, create_index, load_index
from retrosearch.core.index import faiss_index

THREADS, SEARCHES_PER_THREAD = 16, 50
SETTINGS = Settings(faiss=FaissSettings(hnsw_ef_search=64, ivf_nprobe=4))


def _tasks(num_queries: int) -> list[tuple[int, int, int]]:
    """(first query row, batch size, k) of each of THREADS x SEARCHES_PER_THREAD searches."""
    return [(i % num_queries, 1 + i % 3, (5, 10, 20)[i % 3]) for i in range(THREADS * SEARCHES_PER_THREAD)]


def _hammer(index, queries: np.ndarray) -> None:
    """Assert concurrent searches equal serial ones, hit for hit and score for score."""
    tasks = _tasks(len(queries))

    def run(task):
        row, batch, k = task
        hits = index.search(queries[row : row + batch], k)
        return hits.ids, hits.scores

    serial = [run(task) for task in tasks]
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(run, tasks))
    assert len(concurrent) == len(serial)
    for (task, got), want in zip(zip(tasks, concurrent), serial):
        assert got == want, f"search {task} differs under concurrency"


@pytest.fixture(scope="module", params=["faiss-flat", "faiss-hnsw", "faiss-ivfpq"])
def built(request, scifact_embedded):
    index = create_index(request.param, scifact_embedded.meta, SETTINGS)
    index.add(scifact_embedded.ids, scifact_embedded.vectors)
    return index


def test_concurrent_searches_equal_serial_ones(built, scifact_embedded):
    _hammer(built, scifact_embedded.query_vectors)


def test_search_parameters_are_set_when_built_and_loaded(built, scifact_embedded, tmp_path):
    def in_effect(index):
        inner = faiss.downcast_index(index._index)
        if index.kind == "hnsw":
            return inner.hnsw.efSearch
        if index.kind == "ivfpq":
            return faiss.extract_index_ivf(inner).nprobe
        return None

    expected = {"flat": None, "hnsw": 64, "ivfpq": 4}[built.kind]
    assert in_effect(built) == expected
    built.save(tmp_path / "idx")
    other = Settings(faiss=FaissSettings(hnsw_ef_search=32, ivf_nprobe=2))
    loaded = load_index(tmp_path / "idx", other)
    assert in_effect(loaded) == {"flat": None, "hnsw": 32, "ivfpq": 2}[built.kind]
    if built.kind == "hnsw":
        assert loaded.meta.params["ef_search"] == 32 and loaded.meta.params["m"] == 32
    if built.kind == "ivfpq":
        assert loaded.meta.params["nprobe"] == 2
    _hammer(loaded, scifact_embedded.query_vectors)


def test_hnsw_and_ivfpq_find_the_exact_neighbours_of_real_queries(built, scifact_embedded):
    exact = scifact_embedded.query_vectors @ scifact_embedded.vectors.T
    truth = [{scifact_embedded.ids[j] for j in row} for row in np.argsort(-exact, axis=1)[:, :10]]
    hits = built.search(scifact_embedded.query_vectors, 10)
    recall = np.mean([len(set(ids) & want) / 10 for ids, want in zip(hits.ids, truth)])
    assert recall >= {"flat": 1.0, "hnsw": 0.95, "ivfpq": 0.5}[built.kind]


def test_filter_is_refused_and_fields_come_back_empty(built, scifact_embedded):
    queries = scifact_embedded.query_vectors[:3]
    with pytest.raises(UnsupportedSearchOption, match="cannot filter") as refused:
        built.search(queries, 5, filter={"term": {"lang": "en"}})
    assert isinstance(refused.value, ValueError)
    plain = built.search(queries, 5)
    assert plain.fields is None
    assert built.search(queries, 5, filter={}).ids == plain.ids  # an empty filter restricts nothing
    with_fields = built.search(queries, 5, fields=["title"])
    assert with_fields.ids == plain.ids and with_fields.fields == [[{}] * 5] * 3
    assert built.search(queries, 0).ids == [[], [], []]


def test_gpu_copy_is_built_on_add_and_load_never_in_search(monkeypatch, scifact_embedded, tmp_path):
    """With GPUs present (faked here by a CPU clone) the copy is made by add and load; searches,
    however many and however concurrent, only use it."""
    copies = []

    def fake_gpu_copy(index, kind, nprobe):
        copies.append(kind)
        clone = faiss.clone_index(index)
        if kind == "ivfpq":
            faiss.extract_index_ivf(clone).nprobe = nprobe
        return clone

    monkeypatch.setattr(faiss_index, "gpu_count", lambda: 1)
    monkeypatch.setattr(faiss_index, "gpu_copy", fake_gpu_copy)
    for backend in ("faiss-flat", "faiss-ivfpq"):
        copies.clear()
        index = create_index(backend, scifact_embedded.meta, SETTINGS)
        assert not index.on_gpu and copies == []
        index.add(scifact_embedded.ids[:260], scifact_embedded.vectors[:260])
        assert index.on_gpu and len(copies) == 1
        _hammer(index, scifact_embedded.query_vectors)
        assert len(copies) == 1
        index.add(scifact_embedded.ids, scifact_embedded.vectors)  # 40 new: the copy is rebuilt
        assert len(copies) == 2 and index.count() == 300
        _hammer(index, scifact_embedded.query_vectors)
        index.save(tmp_path / backend)
        loaded = load_index(tmp_path / backend, SETTINGS, backend=backend)
        assert loaded.on_gpu and len(copies) == 3
    copies.clear()
    hnsw = create_index("faiss-hnsw", scifact_embedded.meta, SETTINGS)
    hnsw.add(scifact_embedded.ids, scifact_embedded.vectors)
    assert not hnsw.on_gpu and copies == []  # FAISS has no GPU HNSW: it stays on the CPU
    never = create_index("faiss-flat", scifact_embedded.meta, Settings(faiss=FaissSettings(use_gpu="never")))
    never.add(scifact_embedded.ids, scifact_embedded.vectors)
    assert not never.on_gpu and copies == []
