"""Collection + encoder + backend -> retrieval figures, timings and the configuration used."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from retrosearch.benchmarks.metrics import evaluate_run
from retrosearch.plugin.collections import BeirCollection
from retrosearch.plugin.config import Settings, cache_dir
from retrosearch.plugin.encoder import Encoder
from retrosearch.plugin.index import SearchHits, SearchMode, VectorIndex, create_index, mode_needs_vectors


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

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract: figures at the top level, then counts, timings and configuration."""
        return {
            **{k: round(v, 6) for k, v in self.figures.items()},
            "num_queries": self.num_queries,
            "num_docs": self.num_docs,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "config": self.config,
            "encoder": self.encoder_stats,
            "versions": versions(),
        }


def embed_corpus(collection: BeirCollection, encoder: Encoder) -> tuple[list[str], np.ndarray, dict[str, float]]:
    """Ids and vectors of every document of ``collection``, with the seconds spent."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    docs = collection.corpus
    seconds["read_corpus"] = time.perf_counter() - started
    started = time.perf_counter()
    vectors = encoder.encode_documents(docs, desc=f"embedding {collection.name}")
    seconds["encode_corpus"] = time.perf_counter() - started
    return [d.id for d in docs], vectors, seconds


def corpus_vectors(
    collection: BeirCollection, encoder: Encoder
) -> tuple[list[str], np.ndarray, dict[str, float], Path | None]:
    """Like :func:`embed_corpus`, but taken from this encoder's cached exact FAISS index of the
    collection when there is one (the same vectors, without minutes of embedding); the last
    item says where they came from (None: embedded now)."""
    cached = cached_index_dir(collection, encoder.fingerprint)
    if (cached / "meta.json").exists():
        from retrosearch.plugin.index.faiss_index import FaissIndex

        started = time.perf_counter()
        stored = FaissIndex.load(cached)
        stored.check_query_encoder(encoder.index_meta())
        ids, vectors = stored.stored_vectors()
        if len(ids) == len(collection.corpus):
            return ids, vectors, {"read_cached_vectors": time.perf_counter() - started}, cached
    ids, vectors, seconds = embed_corpus(collection, encoder)
    return ids, vectors, seconds, None


def fill_index(
    index: VectorIndex, ids: list[str], vectors: np.ndarray, fields: list[dict[str, Any]] | None = None
) -> float:
    """Load ``vectors`` (and stored ``fields``) into ``index`` in its bulk-loading mode; the seconds."""
    started = time.perf_counter()
    with index.loading():
        index.add(ids, vectors, fields)
    return time.perf_counter() - started


def text_fields(collection: BeirCollection, ids: list[str]) -> list[dict[str, Any]]:
    """Title and text of each id, for backends that also search lexically."""
    docs = {d.id: d for d in collection.corpus}
    return [{"title": docs[i].title, "text": docs[i].text} for i in ids]


def index_vectors(
    ids: list[str], vectors: np.ndarray, encoder: Encoder, backend: str, settings: Settings,
    fields: list[dict[str, Any]] | None = None,
) -> tuple[VectorIndex, float]:
    """A new ``backend`` index holding ``vectors`` (and ``fields``), and the seconds it took to build."""
    started = time.perf_counter()
    index = create_index(backend, encoder.index_meta(), settings, recreate=True)
    created = time.perf_counter() - started
    return index, created + fill_index(index, ids, vectors, fields)


def build_index(collection: BeirCollection, encoder: Encoder, backend: str, settings: Settings) -> tuple[VectorIndex, dict[str, float]]:
    """Embed every document of ``collection`` and load it into a new ``backend`` index.

    The index is created first, so an unreachable server fails before minutes of embedding.
    An OpenSearch index without a configured name is called after the collection and encoder.
    """
    if backend == "opensearch" and not settings.opensearch.index:
        from retrosearch.plugin.index.opensearch_index import default_index_name

        settings = settings.model_copy(deep=True)
        settings.opensearch.index = default_index_name(collection.name, encoder.fingerprint)
    started = time.perf_counter()
    index = create_index(backend, encoder.index_meta(), settings, recreate=True)
    created = time.perf_counter() - started
    ids, vectors, seconds = embed_corpus(collection, encoder)
    seconds["build_index"] = created + fill_index(index, ids, vectors)
    return index, seconds


def cached_index_dir(collection: BeirCollection, encoder_fingerprint: str, backend: str = "faiss-flat") -> Path:
    """Where the embedded default keeps a collection's FAISS index for one encoder."""
    return cache_dir() / "indices" / f"{collection.name}-{encoder_fingerprint[:16]}-{backend}"


def cached_faiss_index(collection: BeirCollection, settings: Settings) -> Path:
    """The cached exact FAISS index of ``collection`` for ``settings.encoder``, built on first use."""
    from retrosearch.plugin.encoder import describe

    index_dir = cached_index_dir(collection, describe(settings.encoder).model_fingerprint)
    if not (index_dir / "meta.json").exists():
        encoder = Encoder.load(settings.encoder)
        index, _ = build_index(collection, encoder, "faiss-flat", settings)
        index.save(index_dir)
    return index_dir


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
    )
