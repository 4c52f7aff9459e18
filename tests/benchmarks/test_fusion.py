"""Fusion of two runs against hand-worked figures."""

from __future__ import annotations

import math

import pytest

from retrosearch.benchmarks.fusion import normalize, reciprocal_rank_fusion, score_fusion

LEXICAL = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
DENSE = {"q1": {"d3": 0.9, "d4": 0.5}, "q2": {"d9": 0.1}}


def test_rrf_sums_reciprocal_ranks():
    fused = reciprocal_rank_fusion([LEXICAL, DENSE], k=60)
    assert fused["q1"] == pytest.approx({"d1": 1 / 61, "d2": 1 / 62, "d3": 1 / 63 + 1 / 61, "d4": 1 / 62})
    assert fused["q2"] == pytest.approx({"d9": 1 / 61})  # a query only one run answered
    assert max(fused["q1"], key=fused["q1"].get) == "d3"
    assert reciprocal_rank_fusion([LEXICAL, DENSE], k=60, depth=2)["q1"].keys() == {"d3", "d1"}
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([LEXICAL], k=0)


def test_min_max_and_l2_normalisation():
    assert normalize(LEXICAL["q1"]) == {"d1": 1.0, "d2": 0.5, "d3": 0.0}
    assert normalize({"a": 2.0, "b": 2.0}) == {"a": 1.0, "b": 1.0}
    l2 = normalize(LEXICAL["q1"], "l2")
    assert l2 == pytest.approx({"d1": 3 / math.sqrt(14), "d2": 2 / math.sqrt(14), "d3": 1 / math.sqrt(14)})
    with pytest.raises(ValueError):
        normalize({"a": 1.0}, "z_score")


def test_weighted_mean_counts_a_missing_part_as_zero():
    even = score_fusion([LEXICAL, DENSE], [0.5, 0.5])["q1"]
    assert even == pytest.approx({"d1": 0.5, "d2": 0.25, "d3": 0.5, "d4": 0.0})
    dense_heavy = score_fusion([LEXICAL, DENSE], [0.3, 0.7])["q1"]
    assert dense_heavy == pytest.approx({"d1": 0.3, "d2": 0.15, "d3": 0.7, "d4": 0.0})
    l2 = score_fusion([LEXICAL, DENSE], [1, 1], "l2")["q1"]
    assert l2["d3"] == pytest.approx((1 / math.sqrt(14) + 0.9 / math.sqrt(1.06)) / 2)
    with pytest.raises(ValueError):
        score_fusion([LEXICAL, DENSE], [1.0])
