"""Collection + encoder + backend -> retrieval figures, timings and the configuration used."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import Settings
from retrosearch.core.encoder import Encoder
from retrosearch.core.index import SearchHits, SearchMode, VectorIndex, mode_needs_vectors
from retrosearch.core.retrieval.indexing import build_index
from retrosearch.core.retrieval.metrics import evaluate_run
from retrosearch.core.retrieval.spread import mean_cosine


def versions() -> dict[str, str]:
    """Versions of the packages that decide the figures."""
    names = ["retrosearch", "torch", "transformers", "faiss-cpu", "ir-measures", "opensearch-py"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class EvalResult:
    """Figures of one evaluation plus what is needed to reproduce and explain them."""

    figures: dict[str, float]
    num_queries: int
    num_docs: int
    seconds: dict[str, float]
    config: dict[str, Any]
    encoder_stats: dict[str, float] = field(default_factory=dict)
    hits: SearchHits | None = None
    query_ids: list[str] = field(default_factory=list)
    #: mean cosine between the judged queries' vectors (near 1: a collapsed encoder); None without vectors
    query_cosine: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract: figures at the top level, then counts, timings and configuration."""
        return {
            **{k: round(v, 6) for k, v in self.figures.items()},
            "query_cosine": None if self.query_cosine is None else round(self.query_cosine, 6),
            "num_queries": self.num_queries,
            "num_docs": self.num_docs,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "config": self.config,
            "encoder": self.encoder_stats,
            "versions": versions(),
        }


def evaluate(
    collection: BeirCollection,
    encoder: Encoder,
    backend: str,
    split: str = "test",
    top_k: int = 100,
    settings: Settings | None = None,
    index: VectorIndex | None = None,
    build_seconds: dict[str, float] | None = None,
    mode: SearchMode = "dense",
    dense_weight: float | None = None,
    normalization: str | None = None,
) -> EvalResult:
    """Retrieve the top ``top_k`` for every judged query of ``split`` and score the run.

    When ``index`` is given it is searched as is (after checking it was built with ``encoder``);
    otherwise the corpus is embedded and a fresh ``backend`` index is built. ``build_seconds``
    carries the cost of building a given index into the reported timings. ``mode`` other than
    dense (bm25, hybrid, neural) searches with OpenSearch's own queries on the same index.
    """
    settings = settings or Settings()
    qrels = collection.qrels(split)
    queries = collection.judged_queries(split)
    seconds: dict[str, float] = dict(build_seconds or {})
    if index is None:
        index, built = build_index(collection, encoder, backend, settings)
        seconds.update(built)
    else:
        index.check_query_encoder(encoder.index_meta())
    texts = [q.text for q in queries]
    query_vectors = None
    if mode_needs_vectors(mode):
        started = time.perf_counter()
        query_vectors = encoder.encode_queries(texts, desc="embedding queries")
        seconds["encode_queries"] = time.perf_counter() - started
    started = time.perf_counter()
    if mode == "dense":
        hits = index.search(query_vectors, top_k)
    else:
        hits = index.search_texts(texts, query_vectors, top_k, mode=mode, dense_weight=dense_weight,
                                  normalization=normalization)
    seconds["search"] = time.perf_counter() - started
    query_ids = [q.id for q in queries]
    started = time.perf_counter()
    figures = evaluate_run(qrels, hits.as_run(query_ids))
    seconds["metrics"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    config = {
        "collection": str(collection.root),
        "split": split,
        "model": encoder.name,
        "model_fingerprint": encoder.fingerprint,
        "spec": encoder.spec.model_dump(),
        "backend": index.meta.backend or backend,
        "mode": mode,
        **({"hybrid_dense_weight": dense_weight if dense_weight is not None else settings.opensearch.hybrid_dense_weight,
            "hybrid_normalization": normalization or settings.opensearch.hybrid_normalization}
           if mode == "hybrid" else {}),
        "index_params": index.meta.params,
        "top_k": top_k,
        "device": str(encoder.device),
        "runtime": encoder.runtime,
        "quantize": encoder.settings.quantize,
        "batch_size": encoder.batch_size,
    }
    return EvalResult(
        figures=figures,
        num_queries=len(queries),
        num_docs=index.count(),
        seconds=seconds,
        config=config,
        encoder_stats=encoder.stats.as_dict(),
        hits=hits,
        query_ids=query_ids,
        query_cosine=None if query_vectors is None else mean_cosine(query_vectors),
    )

