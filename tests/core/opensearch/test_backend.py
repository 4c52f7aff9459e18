"""The OpenSearch backend against a real node: mapping, scores, filters, idempotent bulk, 429s, errors."""

from __future__ import annotations

import numpy as np
import pytest

from retrosearch.core.config import OpenSearchSettings
from retrosearch.core.index import IndexMeta, IndexMismatchError
from retrosearch.core.index.base import SearchModeUnavailable
from retrosearch.core.index.opensearch_index import OpenSearchIndex
from retrosearch.core.opensearch.client import OpenSearchUnavailable, connect
from retrosearch.local.opensearch import server

pytestmark = pytest.mark.integration


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _meta(dim: int = 16, fingerprint: str = "f" * 64) -> IndexMeta:
    return IndexMeta(model_name="test-model", model_fingerprint=fingerprint, dim=dim, similarity="cosine")


@pytest.fixture
def settings(opensearch_url, request):
    name = f"test-{request.node.name.lower().replace('[', '-').replace(']', '')}"[:60]
    s = OpenSearchSettings(url=opensearch_url, index=name, replicas=0)
    yield s
    connect(s).indices.delete(index=name, ignore_unavailable=True)


def test_mapping_and_settings_as_configured(settings):
    settings = settings.model_copy(update={"hnsw_m": 20, "hnsw_ef_construction": 150, "shards": 2})
    index = OpenSearchIndex.create(_meta(), settings)
    client = index.client
    mapping = client.indices.get_mapping(index=settings.index)[settings.index]["mappings"]
    field = mapping["properties"]["embedding"]
    assert field["type"] == "knn_vector" and field["dimension"] == 16
    assert field["method"]["engine"] == "lucene" and field["method"]["space_type"] == "innerproduct"
    assert field["method"]["parameters"] == {"m": 20, "ef_construction": 150}
    assert mapping["_meta"]["retrosearch"]["model_fingerprint"] == "f" * 64
    index_settings = client.indices.get_settings(index=settings.index)[settings.index]["settings"]["index"]
    assert index_settings["knn"] == "true" and index_settings["number_of_shards"] == "2"
    reopened = OpenSearchIndex.open(settings)
    assert reopened.meta.dim == 16 and reopened.space == "innerproduct"
    with pytest.raises(IndexMismatchError):
        OpenSearchIndex.create(_meta(fingerprint="0" * 64), settings)


@pytest.mark.parametrize("space", ["innerproduct", "cosinesimil", "l2"])
def test_scores_come_back_as_the_encoders_similarity(settings, space):
    settings = settings.model_copy(update={"space_type": space})
    docs, queries = _unit(300, seed=1), _unit(4, seed=2)
    index = OpenSearchIndex.create(_meta(), settings)
    with index.loading():
        index.add([str(i) for i in range(300)], docs)
    hits = index.search(queries, 10)
    exact = queries @ docs.T
    for row, (ids, scores) in enumerate(zip(hits.ids, hits.scores)):
        np.testing.assert_allclose(scores, exact[row, [int(i) for i in ids]], atol=1e-4)
        truth = [str(i) for i in np.argsort(-exact[row])[:10]]
        assert len(set(ids) & set(truth)) >= 9  # HNSW, ef_search 256 on 300 docs: (nearly) exact


def test_filters_and_source_fields(settings):
    index = OpenSearchIndex.create(_meta(), settings)
    docs = _unit(60, seed=3)
    fields = [{"title": f"doc {i}", "text": "even" if i % 2 == 0 else "odd"} for i in range(60)]
    index.add([str(i) for i in range(60)], docs, fields)
    hits = index.search(docs[:5], 7, filter={"term": {"text": "odd"}}, fields=["title"])
    assert hits.fields is not None and len(hits.fields) == 5
    for ids, sources in zip(hits.ids, hits.fields):
        assert len(ids) == 7 and all(int(i) % 2 == 1 for i in ids)
        assert sources == [{"title": f"doc {i}"} for i in ids]  # only the fields asked for
    assert index.search(docs[:5], 7).fields is None
    assert not hasattr(index, "last_sources")


def test_loading_twice_is_idempotent_and_restores_settings(settings):
    index = OpenSearchIndex.create(_meta(), settings)
    ids = [f"id-{i}" for i in range(500)]
    vectors = _unit(500, seed=4)
    for _ in range(2):
        with index.loading():
            result = index.write(ids, vectors)
        assert result.written == 500 and not result.failed
        assert index.count() == 500 and index.ids() == set(ids)
    current = index.client.indices.get_settings(index=settings.index)[settings.index]["settings"]["index"]
    assert current.get("refresh_interval") != "-1" and current["number_of_replicas"] == "0"


def test_loading_mode_relaxes_then_restores_even_after_a_killed_load(settings):
    settings = settings.model_copy(update={"replicas": 1})
    index = OpenSearchIndex.create(_meta(), settings)

    def current():
        return index.client.indices.get_settings(index=settings.index)[settings.index]["settings"]["index"]

    with index.loading():
        assert current()["refresh_interval"] == "-1" and current()["number_of_replicas"] == "0"
    assert current().get("refresh_interval") is None and current()["number_of_replicas"] == "1"
    # A load killed inside loading mode leaves refresh off and no replicas behind.
    index.client.indices.put_settings(index=settings.index, body={"index": {"refresh_interval": "-1", "number_of_replicas": 0}})
    with index.loading():
        index.add(["a"], _unit(1))
    assert current().get("refresh_interval") is None and current()["number_of_replicas"] == "1"
    assert index.count() == 1


def test_failed_documents_are_reported_with_reasons(settings):
    index = OpenSearchIndex.create(_meta(), settings)
    docs = list(index.documents(["ok", "bad"], _unit(2)))
    docs[1]["embedding"] = [1.0, 2.0]  # wrong dimension
    from retrosearch.core.opensearch.bulk import bulk_index

    result = bulk_index(index.client, index.name, docs, settings)
    assert result.written == 1 and [doc_id for doc_id, _ in result.failed] == ["bad"]
    assert "HTTP 400" in result.failed[0][1] and "dimension" in result.failed[0][1].lower()


@pytest.fixture(scope="module")
def busy_node(opensearch_url):
    """A second node whose write pool (1 thread, queue of 1) rejects concurrent shard writes with 429."""
    port = 9251 if opensearch_url.endswith(":9250") else 9261
    node = server.ServerSettings(
        port=port, heap="512m", extra={"thread_pool.write.size": 1, "thread_pool.write.queue_size": 1}
    )
    server.start(node)
    yield node.url
    server.stop(node)


def test_bulk_load_against_a_rejecting_node_completes_by_retrying(busy_node):
    settings = OpenSearchSettings(
        url=busy_node, index="pressure", shards=6, replicas=0, bulk_docs=200, bulk_initial_backoff_s=0.2
    )
    index = OpenSearchIndex.create(_meta(dim=32), settings, recreate=True)
    with index.loading():
        result = index.write([str(i) for i in range(2000)], _unit(2000, dim=32, seed=5))
    assert result.rejected_429 > 0, "the node was expected to reject some shard writes"
    assert result.written == 2000 and not result.failed
    assert index.count() == 2000


def test_unreachable_server_and_bad_url_give_one_clear_line():
    with pytest.raises(OpenSearchUnavailable, match=r"cannot reach OpenSearch at http://127\.0\.0\.1:9"):
        connect(OpenSearchSettings(url="http://127.0.0.1:9"))
    with pytest.raises(OpenSearchUnavailable, match="not of the form"):
        connect(OpenSearchSettings(url="localhost:9200"))


def _assert_rescored_is_exact_search(index: OpenSearchIndex, embedded) -> tuple[np.ndarray, np.ndarray]:
    """The index's rescored top 10 is exact search's, in order and with its scores, and the fields
    asked for come back without the vectors; returns the exact scores and top-10 positions."""
    exact = embedded.query_vectors @ embedded.vectors.T
    order = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    hits = index.search(embedded.query_vectors, 10, fields=["title"])
    assert hits.ids == [[embedded.ids[j] for j in row] for row in order]
    np.testing.assert_allclose(hits.scores, np.take_along_axis(exact, order, axis=1), rtol=1e-4)
    assert hits.fields[0][0] == {"title": embedded.titles[order[0, 0]]}
    return exact, order


def test_lucene_scalar_quantization_with_rescoring(settings, scifact_embedded):
    """Lucene's sq encoder in the mapping; its candidates rescored with the float vectors of _source
    give exact search's top 10 in order, on real MiniLM vectors."""
    embedded = scifact_embedded
    settings = settings.model_copy(update={"knn_encoder": "sq", "oversample": 10})
    index = OpenSearchIndex.create(embedded.meta, settings)
    mapping = index.client.indices.get_mapping(index=settings.index)[settings.index]["mappings"]
    assert mapping["properties"]["embedding"]["method"]["parameters"]["encoder"]["name"] == "sq"
    with index.loading():
        index.add(embedded.ids, embedded.vectors, [{"title": t} for t in embedded.titles])
    reopened = OpenSearchIndex.open(settings)
    assert reopened.quantized and reopened.meta.params["knn_encoder"] == "sq"
    exact, order = _assert_rescored_is_exact_search(reopened, embedded)
    unrescored = settings.model_copy(update={"rescore": False})
    plain = OpenSearchIndex(reopened.client, reopened.name, reopened.meta, unrescored)
    codes = plain.search(embedded.query_vectors, 10)
    # without rescoring the scores are Lucene's, from the 7-bit codes
    assert not np.allclose(codes.scores, np.take_along_axis(exact, order, axis=1), rtol=1e-4)
    with pytest.raises(ValueError, match="needs engine lucene"):  # refused before anything is created
        OpenSearchIndex.create(embedded.meta, settings.model_copy(update={"engine": "faiss"}), recreate=True)
    assert OpenSearchIndex.open(settings).count() == len(embedded.ids)


@pytest.mark.parametrize("encoding, oversample", [("int8", 4), ("binary", 20)])
def test_byte_and_binary_vectors_with_rescoring(settings, scifact_embedded, encoding, oversample):
    """Our int8 / binary codes in byte / binary k-NN fields (Lucene engine), the float32 vectors in a
    binary field beside them: rescored candidates give exact search's top 10 in order, on real
    MiniLM vectors; without rescoring the codes' scores approximate the inner product."""
    embedded = scifact_embedded
    settings = settings.model_copy(update={"knn_encoder": encoding, "oversample": oversample})
    index = OpenSearchIndex.create(embedded.meta, settings)
    with index.loading():
        index.add(embedded.ids[:100], embedded.vectors[:100], [{"title": t} for t in embedded.titles[:100]])
        # a second writer opens the index after the first batch and codes with the recorded ranges
        later = OpenSearchIndex.open(settings)
        later.add(embedded.ids[100:], embedded.vectors[100:], [{"title": t} for t in embedded.titles[100:]])
    reopened = OpenSearchIndex.open(settings)
    assert reopened.quantized and reopened.meta.params["knn_encoder"] == encoding
    recorded = reopened.client.indices.get_mapping(index=settings.index)[settings.index]["mappings"]["_meta"]
    assert ("retrosearch_int8" in recorded) == (encoding == "int8")  # the ranges, beside the encoder's record
    assert "int8_ranges" not in reopened.meta.params
    source = reopened.client.get(index=settings.index, id=embedded.ids[0])["_source"]
    assert len(source["embedding"]) == (384 if encoding == "int8" else 48)
    exact, order = _assert_rescored_is_exact_search(reopened, embedded)
    plain = OpenSearchIndex(reopened.client, reopened.name, reopened.meta,
                            settings.model_copy(update={"rescore": False}))
    codes = plain.search(embedded.query_vectors, 10)
    top = [embedded.ids.index(doc_id) for doc_id in codes.ids[0]]
    gap = np.abs(np.asarray(codes.scores[0]) - exact[0, top])
    assert gap.max() < (0.02 if encoding == "int8" else 0.5)  # the codes' own score, read as a similarity
    assert not np.allclose(codes.scores, np.take_along_axis(exact, order, axis=1), rtol=1e-4)
    with pytest.raises(SearchModeUnavailable, match="neural queries send"):
        reopened.search_texts(embedded.queries[:1], None, 10, mode="neural")
    assert reopened.count() == len(embedded.ids)
