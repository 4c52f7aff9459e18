"""The mean cosine between distinct vectors, against the plain pairwise loop."""

from __future__ import annotations

import numpy as np
import pytest

from retrosearch.core.retrieval import mean_cosine


def test_mean_cosine_is_the_mean_over_distinct_pairs():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)) * rng.uniform(0.1, 5.0, size=(40, 1))  # norms differ: cosines, not dots
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = [float(unit[i] @ unit[j]) for i in range(40) for j in range(40) if i != j]
    assert mean_cosine(vectors) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert mean_cosine(vectors, limit=10) == pytest.approx(mean_cosine(vectors[:10]), abs=1e-12)


def test_collapsed_orthogonal_and_too_few_vectors():
    direction = np.array([[3.0, 4.0, 0.0]])
    assert mean_cosine(np.repeat(direction, 5, axis=0) * np.arange(1, 6)[:, None]) == pytest.approx(1.0)
    assert mean_cosine(np.eye(4)) == pytest.approx(0.0)
    assert mean_cosine(np.array([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.0)  # a zero row: no direction
    assert mean_cosine(direction) is None
