"""The library's retrieval jobs: embed a collection's corpus, build an index from the vectors,
search it with a collection's judged queries and score the run (trec_eval's measures).

Used alike by ``retrosearch index`` / ``eval``, the trainers' negative mining, the pipeline and the
benchmarks; ``benchmarks/`` only times, compares and reports on top of these. Exports resolve on
first use, so importing the package costs no torch or FAISS import.
"""

from __future__ import annotations

from retrosearch.core.lazy import lazy_exports

_EXPORTS = {
    "embed_corpus": "embedding",
    "corpus_vectors": "embedding",
    "cached_index_dir": "embedding",
    "fill_index": "indexing",
    "text_fields": "indexing",
    "index_vectors": "indexing",
    "build_index": "indexing",
    "cached_faiss_index": "indexing",
    "EvalResult": "evaluation",
    "evaluate": "evaluation",
    "versions": "evaluation",
    "mean_cosine": "spread",
    "MEASURES": "metrics",
    "evaluate_run": "metrics",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
