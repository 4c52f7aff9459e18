"""`bench ann`'s quantized sweep: each kind with and without rescoring, with bytes per vector."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrosearch.benchmarks.ann import AnnSweep, markdown, quantized_points, recall, without_queries
from retrosearch.core.index import IndexMeta


def test_quantized_points_report_recall_and_bytes_per_vector():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:20] + 0.1 * rng.standard_normal((20, 32)).astype(np.float32)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    meta = IndexMeta(model_name="m", model_fingerprint="abc", dim=32, similarity="cosine")
    points = quantized_points("real", vectors, queries, truth, meta, kinds=("int8", "binary"),
                              oversample=(1, 40), progress=lambda _: None)
    by_label = {p.label(): p for p in points}
    assert set(by_label) == {f"faiss-{kind} {setting}" for kind in ("int8", "binary")
                             for setting in ("rescore=no", "oversample=1", "oversample=40")}
    # float32 rescoring of all 400 vectors is exact search
    assert by_label["faiss-int8 oversample=40"].recall_at_10 == 1.0
    binary_plain = by_label["faiss-binary rescore=no"].recall_at_10
    assert by_label["faiss-binary oversample=40"].recall_at_10 > binary_plain
    int8, binary = by_label["faiss-int8 oversample=1"], by_label["faiss-binary oversample=1"]
    # the codes plus FAISS's header and trained ranges
    assert int8.memory_bytes_per_vector == 32 + (int8.index_bytes - 32 * 400) / 400
    assert binary.memory_bytes_per_vector < 8 and binary.disk_bytes_per_vector > 32  # 4 bytes + int8 store
    assert int8.disk_bytes_per_vector - int8.memory_bytes_per_vector == 4 * 32
    sweep = AnnSweep("c", "m", 20, points, notes=["a note"])
    assert AnnSweep.from_dict(json.loads(json.dumps(sweep.as_dict()))) == sweep
    assert "B/vector memory" in markdown(sweep)
    assert recall(truth, truth) == 1.0


def test_a_scale_point_loses_the_swept_queries_own_vectors_and_nothing_else():
    rng = np.random.default_rng(1)
    points = rng.standard_normal((500, 16)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    queries = np.vstack([points[[7, 300]], -points[:1]])  # two are in the point, one is not
    kept, dropped = without_queries(points, queries)
    assert dropped == 2 and len(kept) == 498
    assert np.array_equal(kept, np.delete(points, [7, 300], axis=0))
    near = points[:3] + 0.05 * points[3:6]  # cosine about 0.999 to rows 0-2: near them, none of them
    assert without_queries(points, near / np.linalg.norm(near, axis=1, keepdims=True))[1] == 0


@pytest.mark.integration
@pytest.mark.parametrize("encoding, oversample", [("sq", 10), ("int8", 10), ("binary", 30)])
def test_opensearch_quantized_points_rescore(opensearch_url, encoding, oversample):
    from retrosearch.benchmarks.ann import opensearch_points
    from retrosearch.core.config import OpenSearchSettings, Settings

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:10] + 0.1 * rng.standard_normal((10, 16)).astype(np.float32)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    meta = IndexMeta(model_name="m", model_fingerprint="ann-sq-test" + "0" * 53, dim=16, similarity="cosine")
    settings = Settings(opensearch=OpenSearchSettings(url=opensearch_url))
    points = opensearch_points("real", vectors, queries, truth, meta, settings, ef_search=(64,),
                               knn_encoder=encoding, oversample=(oversample,))
    by_label = {p.label(): p for p in points}
    rescored = f"opensearch-lucene-{encoding} M=32 efC=200 ef=256 oversample={oversample}"
    assert set(by_label) == {f"opensearch-lucene-{encoding} M=32 efC=200 ef=64", rescored}
    assert by_label[rescored].recall_at_10 == 1.0
    assert all(p.disk_bytes_per_vector > 16 for p in points)
