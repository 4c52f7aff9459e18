"""FAISS backends: exact inner product (``flat``), HNSW (``hnsw``), IVF-PQ (``ivfpq``) and the
quantized kinds with rescoring (``int8``, ``int8-hnsw``, ``binary``, ``binary-hnsw``).

All score by inner product, which is the encoder's similarity: ``dot`` as is, and ``cosine``
because the encoder runtime emits unit vectors whenever the similarity is cosine. A saved index is
a folder: ``index.faiss``, ``ids.json`` (position -> document id) and ``meta.json`` (the
:class:`IndexMeta`).

The quantized kinds keep compact codes in memory: FAISS's 8-bit scalar quantizer
(``IndexScalarQuantizer`` / ``IndexHNSWSQ``, ``QT_8bit``: 1 byte per dimension, a quarter of
float32) or packed sign bits searched by Hamming distance (``IndexBinaryFlat`` /
``IndexBinaryHNSW``: 1 bit per dimension, a 32nd). Their top ``k x oversample`` candidates are
rescored against the vectors of a memory-mapped store beside the index (``rescore.npy``: float32
for the int8 kinds, FAISS int8 codes for the binary kinds; see
:mod:`~retrosearch.core.index.rescoring`). ``oversample`` and ``rescore`` are search settings. The
int8 codes' ranges are trained on the first ``add``. Without rescoring, an int8 hit's score is the
codes' inner product and a binary hit's ``1 - 2 * hamming / dim`` (the share of agreeing signs,
from -1 to 1).

Search parameters are fixed when an index is built or loaded: efSearch (HNSW) and nprobe (IVF)
from :class:`FaissSettings`, and the GPU copy (``use_gpu="auto"`` with GPUs present; HNSW stays
on the CPU, and so do the quantized kinds, which exist to save memory) is made after loading and
after every ``add``. ``search`` only reads, so one index
serves concurrent searches.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.index.base import Footprint, SearchHits, UnsupportedSearchOption, VectorIndex
from retrosearch.core.index.rescoring import RescoreStore, StoreDtype, sign_bits
from retrosearch.core.vector_space import IndexMeta

# Each kind is the registry's backend ``faiss-<kind>``.
KINDS = ("flat", "hnsw", "ivfpq", "int8", "int8-hnsw", "binary", "binary-hnsw")
# Quantized kinds -> what their rescoring store keeps.
RESCORE_STORE: dict[str, StoreDtype] = {
    "int8": "float32", "int8-hnsw": "float32", "binary": "int8", "binary-hnsw": "int8"
}
HNSW_KINDS = ("hnsw", "int8-hnsw", "binary-hnsw")
# Kinds trained on their first add (IVF lists and PQ codebooks; scalar-quantizer ranges).
TRAINED_KINDS = ("ivfpq", "int8", "int8-hnsw")
# Largest k FAISS GPU indices select; larger searches run on the CPU index.
GPU_MAX_K = 2048


def gpu_count() -> int:
    """GPUs FAISS can use (0 with the faiss-cpu wheel)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def gpu_copy(index: faiss.Index, kind: str, nprobe: int) -> faiss.Index:
    """A copy of ``index`` on every GPU, searching ``nprobe`` lists when it is an IVF index."""
    gpu = faiss.index_cpu_to_all_gpus(index)
    if kind == "ivfpq":
        faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", nprobe)
    return gpu


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, limit) + 1) if n % d == 0)


class FaissIndex(VectorIndex):
    """A FAISS index plus its id mapping; adding an id that is already present is a no-op.

    Not for concurrent writers: ``add`` and ``save`` must not run while other threads search.
    """

    def __init__(self, meta: IndexMeta, kind: str = "flat", settings: FaissSettings | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown FAISS index kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.settings = settings or FaissSettings()
        self.meta = meta.model_copy(update={"backend": f"faiss-{kind}", "params": self._params()})
        self._index: faiss.Index | None = None if kind in TRAINED_KINDS else self._configured(self._empty())
        self._store = RescoreStore(self.meta.dim, RESCORE_STORE[kind]) if kind in RESCORE_STORE else None
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._gpu_index: faiss.Index | None = None
        # FAISS GPU indices are not thread-safe even for searches: GPU searches take turns.
        self._gpu_lock = threading.Lock()

    # -- the registry's entry points ------------------------------------------------------------
    @classmethod
    def create_empty(
        cls, meta: IndexMeta, settings: Settings, kind: str | None = None, recreate: bool = False
    ) -> "FaissIndex":
        """A new in-memory index of ``kind`` (default flat); ``recreate`` has no meaning here."""
        return cls(meta, kind=kind or "flat", settings=settings.faiss)

    @classmethod
    def open_saved(cls, path: str | Path | None, settings: Settings, kind: str | None = None) -> "FaissIndex":
        """The index folder at ``path`` (see :meth:`load`)."""
        if path is None:
            raise ValueError("no FAISS index folder given")
        return cls.load(path, settings=settings.faiss, kind=kind)

    # -- construction ---------------------------------------------------------------------------
    @property
    def quantized(self) -> bool:
        """Whether the index searches quantized codes (and rescores from a store)."""
        return self._store is not None

    def _params(self) -> dict:
        s = self.settings
        params: dict = {}
        if self.kind in HNSW_KINDS:
            params = {"m": s.hnsw_m, "ef_construction": s.hnsw_ef_construction, "ef_search": s.hnsw_ef_search}
        elif self.kind == "ivfpq":
            params = {"nlist": s.ivf_nlist, "nprobe": s.ivf_nprobe, "pq_m": s.pq_m, "pq_nbits": s.pq_nbits}
        if self.kind in RESCORE_STORE:
            params.update(oversample=s.oversample, rescore=s.rescore, rescore_store=RESCORE_STORE[self.kind])
        return params

    def _empty(self, n_train: int = 0) -> faiss.Index:
        d, ip = self.meta.dim, faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind in ("binary", "binary-hnsw") and d % 8:
            raise ValueError(f"faiss-{self.kind} needs a dimension divisible by 8, got {d}")
        index: faiss.Index
        if self.kind == "int8":
            return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
        if self.kind == "binary":
            return faiss.IndexBinaryFlat(d)
        if self.kind in HNSW_KINDS:
            if self.kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, self.settings.hnsw_m, ip)
            elif self.kind == "int8-hnsw":
                index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, self.settings.hnsw_m, ip)
            else:
                index = faiss.IndexBinaryHNSW(d, self.settings.hnsw_m)
            index.hnsw.efConstruction = self.settings.hnsw_ef_construction
            return index
        nlist = self.settings.ivf_nlist or max(1, min(int(4 * math.sqrt(n_train)), n_train // 39))
        pq_m = self.settings.pq_m or _largest_divisor_at_most(d, max(1, d // 8))
        nbits = self.settings.pq_nbits
        if d % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the dimension {d}")
        if n_train < nlist:
            raise ValueError(f"IVF-PQ needs at least nlist={nlist} training vectors in the first add, got {n_train}")
        if n_train < 2**nbits:
            raise ValueError(
                f"IVF-PQ needs at least 2**pq_nbits={2**nbits} training vectors in the first add, got {n_train}"
            )
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, pq_m, nbits, ip)
        self.meta.params.update({"nlist": nlist, "pq_m": pq_m, "pq_nbits": nbits})
        return index

    def _configured(self, index: faiss.Index) -> faiss.Index:
        """``index`` with the search-time parameters of the settings (set once, never per search)."""
        if self.kind == "binary-hnsw":
            faiss.downcast_IndexBinary(index).hnsw.efSearch = self.settings.hnsw_ef_search
        elif self.kind in HNSW_KINDS:
            faiss.downcast_index(index).hnsw.efSearch = self.settings.hnsw_ef_search
        elif self.kind == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = self.settings.ivf_nprobe
        return index

    def _rebuild_gpu(self) -> None:
        """Replace the GPU copy by one of the current CPU index (when GPUs are to be used)."""
        self._gpu_index = None
        on_cpu = self.kind in HNSW_KINDS or self.quantized
        if self._index is None or on_cpu or self.settings.use_gpu != "auto" or gpu_count() == 0:
            return
        try:
            self._gpu_index = gpu_copy(self._index, self.kind, self.settings.ivf_nprobe)
        except RuntimeError as exc:  # e.g. a PQ layout the GPU kernels do not support
            message = f"FAISS could not copy the {self.kind} index to the GPU, searching on the CPU: {exc}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    @property
    def on_gpu(self) -> bool:
        """Whether searches (up to :data:`GPU_MAX_K` hits) run on a GPU copy."""
        return self._gpu_index is not None

    # -- VectorIndex ----------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray, fields: Sequence[dict] | None = None) -> int:
        """Add new ids (``fields`` are not stored: a FAISS index holds vectors and ids only).

        The first add of an IVF-PQ or int8 index trains it. A GPU copy is rebuilt after each add, so add
        in few large batches. Not safe while other threads search.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.meta.dim:
            raise ValueError(f"expected vectors of shape (n, {self.meta.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        keep, new_ids, seen = [], [], set(self._positions)
        for row, doc_id in enumerate(ids):
            if doc_id not in seen:
                seen.add(doc_id)
                new_ids.append(doc_id)
                keep.append(row)
        if not keep:
            return 0
        fresh = vectors[keep]
        if self._index is None:
            index = self._empty(n_train=len(fresh))
            index.train(fresh)
            self._index = self._configured(index)
        self._index.add(sign_bits(fresh) if self.kind.startswith("binary") else fresh)
        if self._store is not None:
            self._store.append(fresh)
        for doc_id in new_ids:
            self._positions[doc_id] = len(self._ids)
            self._ids.append(doc_id)
        self._rebuild_gpu()
        return len(keep)

    def count(self) -> int:
        return len(self._ids)

    def stored_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every id with its vector as stored (exact for flat and HNSW and from the float32 store of
        the int8 kinds; PQ codes and the binary kinds' int8 store decode lossily)."""
        if self._index is None or not self._ids:
            return [], np.zeros((0, self.meta.dim), dtype=np.float32)
        if self._store is not None:
            return list(self._ids), self._store.vectors(np.arange(len(self._ids)))
        return list(self._ids), self._index.reconstruct_n(0, len(self._ids))

    def search_positions(
        self, queries: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None,
        oversample: float | None = None, rescore: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row positions; -1 pads) on the CPU index, with efSearch / nprobe /
        oversample / rescore for this call only (given; else the settings'): nothing on the index
        changes, so sweeps of these settings need no rebuild and stay thread-safe."""
        queries = self.check_search_args(queries, k)
        if self._index is None:
            raise ValueError("the index is empty")
        return self._search_cpu(queries, min(k, len(self._ids)), ef_search, nprobe, oversample, rescore)

    def _search_cpu(
        self, queries: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None,
        oversample: float | None = None, rescore: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions) of the CPU index: quantized kinds search ``k x oversample`` candidates
        and rescore them (unless ``rescore`` is off)."""
        params = None
        if self.kind in HNSW_KINDS and ef_search:
            params = faiss.SearchParametersHNSW(efSearch=ef_search)
        elif self.kind == "ivfpq" and nprobe:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        if self._store is None:
            return self._index.search(queries, k, params=params)
        rescore = self.settings.rescore if rescore is None else rescore
        oversample = self.settings.oversample if oversample is None else oversample
        width = min(len(self._ids), math.ceil(k * oversample)) if rescore else k
        if self.kind.startswith("binary"):
            distances, positions = self._index.search(sign_bits(queries), width, params=params)
            # the share of agreeing signs, as a similarity (higher is better), -1..1
            scores = 1.0 - 2.0 * distances.astype(np.float32) / self.meta.dim
        else:
            scores, positions = self._index.search(queries, width, params=params)
        if not rescore:
            return scores, positions
        return self._store.rescore(queries, positions, k)

    def size_bytes(self) -> int:
        """The index's serialised size (vectors, graph or codes): what it takes in memory, and on disk
        apart from a quantized index's rescoring store."""
        if self._index is None:
            return 0
        if self.kind.startswith("binary"):
            return int(faiss.serialize_index_binary(self._index).nbytes)
        return int(faiss.serialize_index(self._index).nbytes)

    def footprint(self) -> Footprint:
        """Bytes in memory (the FAISS index: vectors or codes, graph) and on disk (plus a quantized
        index's rescoring store, memory-mapped: read for the candidates only)."""
        memory = self.size_bytes()
        store = 0 if self._store is None else len(self._store) * self._store.bytes_per_vector
        return Footprint(self.count(), memory_bytes=memory, disk_bytes=memory + store, rescore_bytes=store)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter: dict | None = None,
        fields: Sequence[str] | None = None,
    ) -> SearchHits:
        """Top-``k`` by inner product with efSearch/nprobe as set when the index was built or loaded.

        FAISS keeps no fields and cannot filter: a non-empty ``filter`` raises
        :class:`UnsupportedSearchOption`; with ``fields`` asked, each hit's entry in
        ``hits.fields`` is an empty dict (there is nothing stored to return).

        Thread-safe for concurrent readers (searches on a GPU copy take turns, as FAISS GPU
        resources are not thread-safe); not while ``add`` runs.
        """
        if filter:
            raise UnsupportedSearchOption(
                f"the {self.meta.backend} backend cannot filter (got filter {filter!r}); use the opensearch backend"
            )
        queries = self.check_search_args(queries, k, fields)
        ids, index, gpu = self._ids, self._index, self._gpu_index
        if not ids or k == 0 or index is None:
            return self.no_hits(len(queries), fields)
        k = min(k, len(ids))
        if gpu is not None and k <= GPU_MAX_K:
            with self._gpu_lock:
                scores, positions = gpu.search(queries, k)
        else:
            scores, positions = self._search_cpu(queries, k)
        hits_ids, hits_scores = [], []
        for row_pos, row_scores in zip(positions, scores):
            valid = row_pos >= 0
            hits_ids.append([ids[p] for p in row_pos[valid]])
            hits_scores.append(row_scores[valid].astype(float).tolist())
        hit_fields = [[{} for _ in row] for row in hits_ids] if fields else None
        return SearchHits(ids=hits_ids, scores=hits_scores, fields=hit_fields)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the index folder atomically enough: the files land under temporary names first."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            raise ValueError(f"cannot save a faiss-{self.kind} index never trained (add vectors first)")
        meta = self.meta.model_copy(update={"params": {**self.meta.params, "kind": self.kind}})
        write_index = faiss.write_index_binary if self.kind.startswith("binary") else faiss.write_index
        files = {
            "index.faiss": lambda p: write_index(self._index, str(p)),
            **(self._store.writers() if self._store is not None else {}),
            "ids.json": lambda p: p.write_text(json.dumps(self._ids)),
            "meta.json": lambda p: p.write_text(meta.model_dump_json(indent=2)),
        }
        for name, write in files.items():
            tmp = path / f".{name}.tmp"
            write(tmp)
            os.replace(tmp, path / name)

    @classmethod
    def load(cls, path: str | Path, settings: FaissSettings | None = None, kind: str | None = None) -> "FaissIndex":
        """Load an index folder written by :meth:`save`, ready to search.

        Build-time parameters (M, nlist, PQ layout) come from the folder; search-time ones
        (efSearch, nprobe, oversample, rescore, GPU use) from ``settings``. A quantized index's
        rescoring store is memory-mapped, not read. With ``kind`` given, a folder holding
        another kind is a ValueError.
        """
        path = Path(path)
        if not (path / "meta.json").exists():
            raise FileNotFoundError(f"{path} is not a FAISS index folder (meta.json missing)")
        meta = IndexMeta.model_validate_json((path / "meta.json").read_text())
        params = dict(meta.params)
        saved_kind = params.pop("kind", meta.backend.removeprefix("faiss-"))
        if kind is not None and kind != saved_kind:
            raise ValueError(f"{path} holds a faiss-{saved_kind} index, not faiss-{kind}")
        base = settings or FaissSettings()
        if saved_kind not in KINDS:
            raise ValueError(f"{path} holds a faiss-{saved_kind} index, which this version cannot open")
        saved, in_effect = {}, {}
        if saved_kind in HNSW_KINDS:
            saved = {"hnsw_m": params.get("m"), "hnsw_ef_construction": params.get("ef_construction")}
            in_effect = {"ef_search": base.hnsw_ef_search}
        elif saved_kind == "ivfpq":
            saved = {"ivf_nlist": params.get("nlist"), "pq_m": params.get("pq_m"),
                     "pq_nbits": params.get("pq_nbits")}
            in_effect = {"nprobe": base.ivf_nprobe}
        if saved_kind in RESCORE_STORE:
            in_effect.update(oversample=base.oversample, rescore=base.rescore)
        settings = base.model_copy(update={k: v for k, v in saved.items() if v is not None})
        index = cls(meta.model_copy(update={"params": {}}), kind=saved_kind, settings=settings)
        # The parameters recorded are the ones searches use now.
        index.meta = meta.model_copy(update={"params": {**params, **in_effect}})
        if saved_kind.startswith("binary"):
            index._index = index._configured(faiss.read_index_binary(str(path / "index.faiss")))
        else:
            index._index = index._configured(faiss.read_index(str(path / "index.faiss")))
        if saved_kind in RESCORE_STORE:
            index._store = RescoreStore.load(path, meta.dim, RESCORE_STORE[saved_kind])
        index._ids = json.loads((path / "ids.json").read_text())
        index._positions = {doc_id: i for i, doc_id in enumerate(index._ids)}
        if index._index.ntotal != len(index._ids):
            raise ValueError(f"{path}: index holds {index._index.ntotal} vectors but ids.json {len(index._ids)} ids")
        if index._store is not None and len(index._store) != len(index._ids):
            raise ValueError(f"{path}: rescore.npy has {len(index._store)} rows for {len(index._ids)} ids")
        index._rebuild_gpu()
        return index
