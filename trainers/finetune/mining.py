"""Hard-negative mining with the project's own encoder runtime and index.

The corpus is encoded with the current model into a fresh index (FAISS flat by default), each
training query is searched, and negatives are sampled from a window of ranks, never from the
query's known positives (by id, and by identical text, since corpora hold duplicates). The
result is a JSONL training file plus a ``.meta.json`` beside it saying how it was made.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.core.retrieval import build_index
from retrosearch.core.collections import BeirCollection
from retrosearch.core.collections.records import Document
from retrosearch.core.config import Settings
from retrosearch.core.encoder import Encoder
from retrosearch.core.index import SearchHits, VectorIndex
from retrosearch.trainers.finetune.config import MiningConfig
from retrosearch.trainers.finetune.data import Passage, TrainingGroup, groups_from_qrels, write_groups


def _text_key(doc: Passage | Document) -> str:
    return " ".join(f"{doc.title} {doc.text}".lower().split())


@dataclass
class MiningResult:
    """Mined groups, the index they were mined from (reusable for a zero-shot evaluation) and counts."""

    groups: list[TrainingGroup]
    index: VectorIndex
    stats: dict[str, Any]


def select_negatives(
    group: TrainingGroup,
    hit_ids: Sequence[str],
    hit_scores: Sequence[float],
    docs: dict[str, Document],
    config: MiningConfig,
    seed_key: str,
) -> list[Passage]:
    """Negatives for one query from its ranked hits: ranks in the window, no positives, sampled.

    Returned in rank order with ``rank`` and ``score`` kept on each passage for inspection.
    """
    positive_ids = {p.id for p in group.positives if p.id}
    positive_texts = {_text_key(p) for p in group.positives}
    candidates = []
    for rank, (doc_id, score) in enumerate(zip(hit_ids, hit_scores), start=1):
        if rank < config.rank_start or rank > config.rank_end:
            continue
        doc = docs[doc_id]
        if doc_id in positive_ids or _text_key(doc) in positive_texts:
            continue
        candidates.append(Passage.from_document(doc, rank=rank, score=round(float(score), 6)))
    if len(candidates) > config.num_negatives:
        rng = random.Random(f"{config.seed}:{seed_key}")
        chosen = sorted(rng.sample(range(len(candidates)), config.num_negatives))
        candidates = [candidates[i] for i in chosen]
    return candidates


def mine_groups(
    groups: Sequence[TrainingGroup], encoder: Encoder, index: VectorIndex, docs: dict[str, Document], config: MiningConfig
) -> tuple[list[TrainingGroup], dict[str, Any]]:
    """Search every group's query in ``index`` and attach mined negatives to it."""
    k = min(config.rank_end, index.count())
    started = time.perf_counter()
    vectors = encoder.encode_queries([g.query for g in groups], desc="embedding training queries")
    hits: SearchHits = index.search(vectors, k)
    mined, positives_in_window, short = [], 0, 0
    for number, (group, ids, scores) in enumerate(zip(groups, hits.ids, hits.scores)):
        positive_ids = {p.id for p in group.positives}
        positives_in_window += sum(
            1 for rank, doc_id in enumerate(ids, start=1) if config.rank_start <= rank and doc_id in positive_ids
        )
        negatives = select_negatives(group, ids, scores, docs, config, group.query_id or str(number))
        short += len(negatives) < config.num_negatives
        mined.append(TrainingGroup(group.query, group.positives, tuple(negatives), group.query_id))
    stats = {
        "queries": len(mined),
        "negatives": sum(len(g.negatives) for g in mined),
        "queries_short_of_negatives": short,
        "positives_skipped_in_window": positives_in_window,
        "search_k": k,
        "seconds_search": round(time.perf_counter() - started, 3),
    }
    return mined, stats


def mine_collection(
    collection: BeirCollection,
    split: str,
    encoder: Encoder,
    config: MiningConfig,
    settings: Settings | None = None,
    index: VectorIndex | None = None,
) -> MiningResult:
    """Mine negatives for every judged query of ``split`` (its qrels only) from ``collection``'s corpus.

    ``index`` may be a prebuilt index of the corpus made with ``encoder``; otherwise one is built.
    """
    settings = settings or Settings()
    groups = groups_from_qrels(collection, split, config.min_grade)
    stats: dict[str, Any] = {}
    if index is None:
        index, seconds = build_index(collection, encoder, config.backend, settings)
        stats["seconds_index"] = {k: round(v, 3) for k, v in seconds.items()}
    else:
        index.check_query_encoder(encoder.index_meta())
    docs = {d.id: d for d in collection.corpus}
    mined, search_stats = mine_groups(groups, encoder, index, docs, config)
    stats.update(search_stats)
    return MiningResult(mined, index, stats)


def write_mined(path: str | Path, result: MiningResult, provenance: dict[str, Any]) -> Path:
    """Write the groups as JSONL and ``<path>.meta.json`` with the provenance and counts."""
    path = Path(path)
    write_groups(path, result.groups)
    meta = {
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **provenance,
        "stats": result.stats,
    }
    meta_path = path.with_name(path.name + ".meta.json")
    meta_path.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta_path


def mining_provenance(collection: BeirCollection, split: str, encoder: Encoder, config: MiningConfig) -> dict[str, Any]:
    """How a mined file was made: the data, the model (name and fingerprint) and the window."""
    return {
        "collection": str(collection.root),
        "split": split,
        "model": encoder.name,
        "model_fingerprint": encoder.fingerprint,
        "spec": encoder.spec.model_dump(),
        "mining": config.model_dump(),
    }
