"""FAISS backends: exact inner product (``flat``), HNSW (``hnsw``) and IVF-PQ (``ivfpq``).

All three score by inner product, which is the encoder's similarity: ``dot`` as is, and
``cosine`` because the encoder runtime emits unit vectors whenever the similarity is cosine.
A saved index is a folder: ``index.faiss``, ``ids.json`` (position -> document id) and
``meta.json`` (the :class:`IndexMeta`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from retrosearch.plugin.config import FaissSettings
from retrosearch.plugin.index.base import IndexMeta, SearchHits, VectorIndex

KINDS = ("flat", "hnsw", "ivfpq")


def gpu_count() -> int:
    """GPUs FAISS can use (0 with the faiss-cpu wheel)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, limit) + 1) if n % d == 0)


class FaissIndex(VectorIndex):
    """A FAISS index plus its id mapping; adding an id that is already present is a no-op."""

    def __init__(self, meta: IndexMeta, kind: str = "flat", settings: FaissSettings | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown FAISS index kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.settings = settings or FaissSettings()
        self.meta = meta.model_copy(update={"backend": f"faiss-{kind}", "params": self._params()})
        self._index: faiss.Index | None = None if kind == "ivfpq" else self._empty()
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._gpu_index: faiss.Index | None = None

    # -- construction ---------------------------------------------------------------------------
    def _params(self) -> dict:
        s = self.settings
        if self.kind == "hnsw":
            return {"m": s.hnsw_m, "ef_construction": s.hnsw_ef_construction, "ef_search": s.hnsw_ef_search}
        if self.kind == "ivfpq":
            return {"nlist": s.ivf_nlist, "nprobe": s.ivf_nprobe, "pq_m": s.pq_m, "pq_nbits": s.pq_nbits}
        return {}

    def _empty(self, n_train: int = 0) -> faiss.Index:
        d, ip = self.meta.dim, faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.settings.hnsw_m, ip)
            index.hnsw.efConstruction = self.settings.hnsw_ef_construction
            return index
        nlist = self.settings.ivf_nlist or max(1, min(int(4 * math.sqrt(n_train)), n_train // 39))
        pq_m = self.settings.pq_m or _largest_divisor_at_most(d, max(1, d // 8))
        nbits = self.settings.pq_nbits
        if d % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the dimension {d}")
        if n_train < nlist:
            raise ValueError(f"IVF-PQ needs at least nlist={nlist} training vectors in the first add, got {n_train}")
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, pq_m, nbits, ip)
        self.meta.params.update({"nlist": nlist, "pq_m": pq_m, "pq_nbits": nbits})
        return index

    # -- VectorIndex ----------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray, fields: Sequence[dict] | None = None) -> int:
        """Add new ids (``fields`` are not stored: a FAISS index holds vectors and ids only)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.meta.dim:
            raise ValueError(f"expected vectors of shape (n, {self.meta.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        keep = []
        for row, doc_id in enumerate(ids):
            if doc_id not in self._positions:
                self._positions[doc_id] = len(self._ids)
                self._ids.append(doc_id)
                keep.append(row)
        if not keep:
            return 0
        fresh = vectors[keep]
        if self._index is None:
            self._index = self._empty(n_train=len(fresh))
            self._index.train(fresh)
        self._index.add(fresh)
        self._gpu_index = None
        return len(keep)

    def count(self) -> int:
        return len(self._ids)

    def _searcher(self) -> faiss.Index:
        assert self._index is not None
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.settings.hnsw_ef_search
            return self._index
        if self.kind == "ivfpq":
            self._index.nprobe = self.settings.ivf_nprobe
        if self.settings.use_gpu == "auto" and gpu_count() > 0:
            if self._gpu_index is None:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
                if self.kind == "ivfpq":
                    faiss.GpuParameterSpace().set_index_parameter(self._gpu_index, "nprobe", self.settings.ivf_nprobe)
            return self._gpu_index
        return self._index

    def search(self, queries: np.ndarray, k: int) -> SearchHits:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.meta.dim:
            raise ValueError(f"expected queries of shape (n, {self.meta.dim}), got {queries.shape}")
        if not self._ids:
            return SearchHits(ids=[[] for _ in queries], scores=[[] for _ in queries])
        k = min(k, len(self._ids))
        scores, positions = self._searcher().search(queries, k)
        hits_ids, hits_scores = [], []
        for row_pos, row_scores in zip(positions, scores):
            valid = row_pos >= 0
            hits_ids.append([self._ids[p] for p in row_pos[valid]])
            hits_scores.append(row_scores[valid].astype(float).tolist())
        return SearchHits(ids=hits_ids, scores=hits_scores)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the index folder atomically enough: the files land under temporary names first."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            raise ValueError("cannot save an IVF-PQ index that has never been trained (add vectors first)")
        meta = self.meta.model_copy(update={"params": {**self.meta.params, "kind": self.kind}})
        files = {
            "index.faiss": lambda p: faiss.write_index(self._index, str(p)),
            "ids.json": lambda p: p.write_text(json.dumps(self._ids)),
            "meta.json": lambda p: p.write_text(meta.model_dump_json(indent=2)),
        }
        for name, write in files.items():
            tmp = path / f".{name}.tmp"
            write(tmp)
            os.replace(tmp, path / name)

    @classmethod
    def load(cls, path: str | Path, settings: FaissSettings | None = None) -> "FaissIndex":
        """Load an index folder written by :meth:`save`."""
        path = Path(path)
        if not (path / "meta.json").exists():
            raise FileNotFoundError(f"{path} is not a FAISS index folder (meta.json missing)")
        meta = IndexMeta.model_validate_json((path / "meta.json").read_text())
        params = dict(meta.params)
        kind = params.pop("kind", meta.backend.removeprefix("faiss-"))
        base = settings or FaissSettings()
        saved = {
            "hnsw": {"hnsw_m": params.get("m"), "hnsw_ef_construction": params.get("ef_construction")},
            "ivfpq": {"ivf_nlist": params.get("nlist"), "pq_m": params.get("pq_m"), "pq_nbits": params.get("pq_nbits")},
        }.get(kind, {})
        settings = base.model_copy(update={k: v for k, v in saved.items() if v is not None})
        index = cls(meta.model_copy(update={"params": {}}), kind=kind, settings=settings)
        index.meta = meta.model_copy(update={"params": params})
        index._index = faiss.read_index(str(path / "index.faiss"))
        index._ids = json.loads((path / "ids.json").read_text())
        index._positions = {doc_id: i for i, doc_id in enumerate(index._ids)}
        if index._index.ntotal != len(index._ids):
            raise ValueError(f"{path}: index holds {index._index.ntotal} vectors but ids.json {len(index._ids)} ids")
        return index
