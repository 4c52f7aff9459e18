"""Fusing the rankings of two retrievers (BM25 and dense) on our side.

* Reciprocal rank fusion (Cormack, Clarke and Buettcher, 2009): a document's score is the sum over
  the runs that retrieved it of ``1 / (k + rank)``, ranks from 1; it needs no score calibration.
* Score fusion as OpenSearch's ``normalization-processor`` does it: each run's scores are
  normalised per query (``min_max``: ``(s - min) / (max - min)``, 1.0 when all are equal;
  ``l2``: ``s / sqrt(sum of s^2)``), then combined by a weighted arithmetic mean in which a run
  that did not retrieve the document contributes 0.

Runs are TREC-style ``{query_id: {doc_id: score}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

Run = dict[str, dict[str, float]]
Normalization = Literal["min_max", "l2"]
RRF_K = 60


def _ranked(scores: Mapping[str, float]) -> list[str]:
    # Best first; ties broken by id so fusion is deterministic.
    return sorted(scores, key=lambda doc: (-scores[doc], doc))


def _cut(scores: dict[str, float], depth: int | None) -> dict[str, float]:
    if depth is None or len(scores) <= depth:
        return scores
    return {doc: scores[doc] for doc in _ranked(scores)[:depth]}


def reciprocal_rank_fusion(runs: Sequence[Run], k: int = RRF_K, depth: int | None = None) -> Run:
    """RRF of ``runs``: ``sum 1 / (k + rank)``; ``depth`` keeps that many fused hits per query."""
    if k <= 0:
        raise ValueError(f"the RRF constant k must be positive, got {k}")
    fused: Run = {}
    for qid in {q for run in runs for q in run}:
        scores: dict[str, float] = {}
        for run in runs:
            for rank, doc in enumerate(_ranked(run.get(qid, {})), start=1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
        fused[qid] = _cut(scores, depth)
    return fused


def normalize(scores: Mapping[str, float], technique: Normalization = "min_max") -> dict[str, float]:
    """One query's scores normalised as OpenSearch's normalization-processor does."""
    if not scores:
        return {}
    if technique == "min_max":
        low, high = min(scores.values()), max(scores.values())
        if high == low:
            return {doc: 1.0 for doc in scores}
        return {doc: (s - low) / (high - low) for doc, s in scores.items()}
    if technique == "l2":
        norm = math.sqrt(sum(s * s for s in scores.values()))
        return {doc: (s / norm if norm else 0.0) for doc, s in scores.items()}
    raise ValueError(f"unknown normalization {technique!r}; choose min_max or l2")


def score_fusion(
    runs: Sequence[Run],
    weights: Sequence[float],
    technique: Normalization = "min_max",
    depth: int | None = None,
) -> Run:
    """Weighted arithmetic mean of per-query normalised scores (absent from a run: 0)."""
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    fused: Run = {}
    for qid in {q for run in runs for q in run}:
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for doc, value in normalize(run.get(qid, {}), technique).items():
                scores[doc] = scores.get(doc, 0.0) + weight * value / total
        fused[qid] = _cut(scores, depth)
    return fused
