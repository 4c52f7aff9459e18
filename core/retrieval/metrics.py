"""Retrieval metrics through ir-measures (trec_eval's definitions via pytrec_eval).

Graded judgments are honoured: NDCG uses the grade as gain (trec_eval's ``ndcg_cut``), while
MRR, Recall and MAP count a document as relevant when its grade is at least 1. Figures are
averaged over the queries that have judgments; a judged query with no hits scores 0.
"""

from __future__ import annotations

import ir_measures
from ir_measures import AP, R, RR, nDCG

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

# Names used in reports and JSON, mapped to ir-measures objects.
MEASURES = {
    "ndcg@10": nDCG @ 10,
    "mrr@10": RR @ 10,
    "recall@100": R @ 100,
    "map": AP,
}


def evaluate_run(qrels: Qrels, run: Run, measures: dict | None = None) -> dict[str, float]:
    """Mean of each measure over the judged queries of ``qrels``.

    Queries of ``run`` without judgments are ignored; judged queries missing from ``run`` count 0,
    so a system cannot improve its figures by answering fewer queries.
    """
    measures = measures or MEASURES
    judged = {qid: docs for qid, docs in qrels.items() if docs}
    padded_run = {qid: dict(run.get(qid, {})) for qid in judged}
    per_query = {name: {} for name in measures}
    by_measure = {measure: name for name, measure in measures.items()}
    for metric in ir_measures.iter_calc(list(measures.values()), judged, padded_run):
        per_query[by_measure[metric.measure]][metric.query_id] = metric.value
    return {name: sum(per_query[name].get(qid, 0.0) for qid in judged) / len(judged) for name in measures}
