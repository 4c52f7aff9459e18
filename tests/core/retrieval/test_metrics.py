"""The metrics wrapper against hand-worked tiny cases (trec_eval definitions)."""

from __future__ import annotations

import math

import pytest

from retrosearch.core.retrieval.metrics import evaluate_run


def test_binary_case_worked_by_hand():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7}, "q2": {"d5": 0.9, "d9": 0.5}}
    got = evaluate_run(qrels, run)
    # q1: relevant at ranks 1 and 3. DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3).
    ndcg_q1 = 1.5 / (1 + 1 / math.log2(3))
    # q2: relevant at rank 2. DCG = 1/log2(3); IDCG = 1.
    ndcg_q2 = 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-6)
    assert got["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert got["recall@100"] == pytest.approx(1.0)
    # AP q1 = (1/1 + 2/3)/2; AP q2 = 1/2.
    assert got["map"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)


def test_graded_gain_is_the_grade_and_zero_grade_is_not_relevant():
    qrels = {"q": {"a": 2, "b": 1, "z": 0}}
    run = {"q": {"b": 3.0, "a": 2.0, "z": 1.0}}
    got = evaluate_run(qrels, run)
    dcg = 1 + 2 / math.log2(3)  # gains 1 then 2
    idcg = 2 + 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-6)
    assert got["recall@100"] == pytest.approx(1.0)
    assert got["mrr@10"] == pytest.approx(1.0)


def test_unanswered_judged_query_counts_zero_and_unjudged_query_is_ignored():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"d1": 1.0}, "q_unjudged": {"d1": 1.0}}
    got = evaluate_run(qrels, run)
    assert got["ndcg@10"] == pytest.approx(0.5)
    assert got["recall@100"] == pytest.approx(0.5)


def test_cutoffs_apply():
    qrels = {"q": {"rel": 1}}
    run = {"q": {f"d{i}": 100.0 - i for i in range(12)} | {"rel": 50.0}}  # rel at rank 13
    got = evaluate_run(qrels, run)
    assert got["ndcg@10"] == 0.0 and got["mrr@10"] == 0.0
    assert got["recall@100"] == 1.0
