"""The OpenSearch backend through the base interface, against a real node: concurrent searches equal
serial ones, filters and stored fields come back per hit, the registry opens it by name."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from retrosearch.core.config import OpenSearchSettings, Settings
from retrosearch.core.index import UnsupportedSearchOption, VectorIndex, create_index, load_index, open_index
from retrosearch.core.opensearch.client import connect

pytestmark = pytest.mark.integration

THREADS, SEARCHES_PER_THREAD = 16, 50


@pytest.fixture(scope="module")
def settings(opensearch_url) -> Settings:
    s = Settings(opensearch=OpenSearchSettings(url=opensearch_url, index="test-search-interface", replicas=0))
    yield s
    connect(s.opensearch).indices.delete(index="test-search-interface", ignore_unavailable=True)


@pytest.fixture(scope="module")
def index(settings, scifact_embedded) -> VectorIndex:
    built = create_index("opensearch", scifact_embedded.meta, settings, recreate=True)
    fields = [
        {"title": title, "text": "even" if i % 2 == 0 else "odd", "n": i}
        for i, title in enumerate(scifact_embedded.titles)
    ]
    with built.loading():
        built.add(scifact_embedded.ids, scifact_embedded.vectors, fields)
    assert built.count() == len(scifact_embedded.ids)
    return built


def test_the_registry_opens_it_by_name(index, settings, scifact_embedded):
    for opened in (load_index(None, settings, backend="opensearch"), open_index(settings)):
        assert opened.meta.backend == "opensearch" and opened.count() == len(scifact_embedded.ids)
        assert opened.search(scifact_embedded.query_vectors[:2], 5).ids == index.search(
            scifact_embedded.query_vectors[:2], 5
        ).ids


def test_concurrent_searches_equal_serial_ones(index, scifact_embedded):
    queries = scifact_embedded.query_vectors
    odd = {"term": {"text": "odd"}}
    tasks = [
        (i % len(queries), 1 + i % 3, (5, 10, 20)[i % 3], odd if i % 4 == 0 else None, ["title"] if i % 2 else None)
        for i in range(THREADS * SEARCHES_PER_THREAD)
    ]

    def run(task):
        row, batch, k, filter, fields = task
        hits = index.search(queries[row : row + batch], k, filter=filter, fields=fields)
        return hits.ids, hits.scores, hits.fields

    serial = [run(task) for task in tasks]
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(run, tasks))
    for task, got, want in zip(tasks, concurrent, serial):
        assert got == want, f"search {task[:3]} differs under concurrency"
        assert (got[2] is None) == (task[4] is None)
    assert vars(index).keys() == {"client", "name", "meta", "settings", "space", "quantized", "encoding", "_int8",
                                  "last_result", "_loading"}


def test_filters_and_fields_through_the_base_interface(index, scifact_embedded):
    queries = scifact_embedded.query_vectors[:4]
    title_of = dict(zip(scifact_embedded.ids, scifact_embedded.titles))
    number_of = {doc_id: i for i, doc_id in enumerate(scifact_embedded.ids)}
    hits = index.search(queries, 10, filter={"term": {"text": "odd"}}, fields=["title", "n"])
    assert hits.fields is not None
    for ids, stored in zip(hits.ids, hits.fields):
        assert len(ids) == 10 and all(number_of[i] % 2 == 1 for i in ids)
        assert stored == [{"title": title_of[i], "n": number_of[i]} for i in ids]
    wanted = scifact_embedded.ids[:3]
    only = index.search(queries, 10, filter={"ids": {"values": wanted}}, fields=["missing"])
    assert all(sorted(ids) == sorted(wanted) for ids in only.ids)  # a filter may leave fewer than k
    assert only.fields == [[{}, {}, {}]] * 4  # no such field stored: empty dicts
    with pytest.raises(UnsupportedSearchOption, match="HTTP 400"):
        index.search(queries, 5, filter={"no_such_query": {}})
