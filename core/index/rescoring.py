"""The rescoring store of the quantized FAISS indices, and the codecs they search with.

A quantized index searches compact codes (int8 scalar codes or packed sign bits), which rank
candidates approximately. Its top ``k x oversample`` candidates are then scored again against a
second copy of each vector, the rescoring store, and the best ``k`` of those scores are the hits.

The store is a ``.npy`` file beside the index, memory-mapped when the index is loaded, so only the
rows of the candidates are read (the operating system pages them in; the resident memory of a
search is the index's codes and graph):

* ``float32`` (the int8 indices): the full-precision vectors, so rescored scores are exact inner
  products and, with enough candidates, the hits are exact search's.
* ``int8`` (the binary indices): FAISS's 8-bit scalar-quantizer codes of the vectors (a quarter
  of the float32 store; 1 byte per dimension), decoded by FAISS for the candidates only. Scores
  are then close to, not equal to, exact inner products.

Every codec is FAISS's own (``ScalarQuantizer`` ``QT_8bit``, ``real_to_binary``); nothing here
quantizes by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

StoreDtype = Literal["float32", "int8"]
STORE_FILE = "rescore.npy"
# The trained ranges of the int8 store's scalar quantizer (FAISS's `ScalarQuantizer.trained`).
RANGES_FILE = "rescore-ranges.npy"
# The gathered (queries x candidates x dim) float32 block of one rescoring step stays this small, so
# it lives in the CPU's cache: at 1,000 candidates per query, blocks of 256 queries (390 MB, fresh
# pages each time) rescored 20-40x slower than blocks of a few queries.
_BLOCK_BYTES = 4 << 20


def sign_bits(vectors: np.ndarray) -> np.ndarray:
    """Packed sign bits of each row (bit set where the value is positive): ``(n, dim / 8)`` uint8,
    the codes of FAISS's binary indices, computed by FAISS's ``real_to_binary``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if dim % 8:
        raise ValueError(f"binary indices need a dimension divisible by 8, got {dim}")
    codes = np.empty((n, dim // 8), dtype=np.uint8)
    if n:
        faiss.real_to_binary(n * dim, faiss.swig_ptr(vectors), faiss.swig_ptr(codes))
    return codes


def int8_quantizer(dim: int, ranges: np.ndarray | None = None) -> faiss.ScalarQuantizer:
    """FAISS's 8-bit scalar quantizer for ``dim`` dimensions, with trained ``ranges`` if given."""
    quantizer = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit)
    if ranges is not None:
        faiss.copy_array_to_vector(np.ascontiguousarray(ranges, dtype=np.float32), quantizer.trained)
    return quantizer


class RescoreStore:
    """A second copy of the indexed vectors, by row position, for rescoring candidates.

    ``float32`` keeps the vectors as given; ``int8`` keeps FAISS 8-bit scalar codes, whose per-
    dimension ranges are trained on the first rows added (later rows outside them are clipped).
    Rows are appended in memory while an index is built; a loaded store is memory-mapped and
    read only (an ``add`` after loading copies it into memory).
    """

    def __init__(self, dim: int, dtype: StoreDtype) -> None:
        self.dim = dim
        self.dtype: StoreDtype = dtype
        self._quantizer: faiss.ScalarQuantizer | None = None
        self._chunks: list[np.ndarray] = []
        self._rows: np.ndarray = np.zeros((0, dim), dtype=np.float32 if dtype == "float32" else np.uint8)
        # Concurrent searches may be the first to need the appended chunks joined: once, under a lock.
        self._join_lock = threading.Lock()

    @property
    def rows(self) -> np.ndarray:
        """Every stored row (float32 vectors or uint8 codes), appended chunks joined once."""
        if self._chunks:
            with self._join_lock:
                if self._chunks:
                    self._rows = np.concatenate([self._rows, *self._chunks])
                    self._chunks = []
        return self._rows

    def __len__(self) -> int:
        return len(self._rows) + sum(len(c) for c in self._chunks)

    def append(self, vectors: np.ndarray) -> None:
        """Store ``vectors`` (float32, ``(n, dim)``) after the rows already stored."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.dtype == "float32":
            self._chunks.append(vectors.copy())
            return
        if self._quantizer is None:
            self._quantizer = int8_quantizer(self.dim)
            self._quantizer.train(vectors)
        self._chunks.append(self._quantizer.compute_codes(vectors))

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors of row ``positions`` as float32 (int8 codes decoded by FAISS)."""
        picked = np.asarray(self.rows[positions])
        if self.dtype == "float32":
            return picked.astype(np.float32, copy=False)
        shape = picked.shape
        decoded = self._quantizer.decode(np.ascontiguousarray(picked.reshape(-1, self.dim)))
        return decoded.reshape(*shape[:-1], self.dim)

    @property
    def bytes_per_vector(self) -> int:
        """Bytes one row takes in the store (4 per dimension for float32, 1 for int8)."""
        return self.dim * (4 if self.dtype == "float32" else 1)

    # -- persistence ----------------------------------------------------------------------------
    def writers(self) -> dict[str, Callable[[Path], None]]:
        """File name -> a function writing that file to a given path (the index saves atomically)."""

        def write_array(array: np.ndarray) -> Callable[[Path], None]:
            def write(path: Path) -> None:
                with path.open("wb") as handle:  # a handle: np.save would append ".npy" to a temporary name
                    np.save(handle, array)

            return write

        files = {STORE_FILE: write_array(self.rows)}
        if self._quantizer is not None:
            files[RANGES_FILE] = write_array(faiss.vector_to_array(self._quantizer.trained))
        return files

    @classmethod
    def load(cls, folder: Path, dim: int, dtype: StoreDtype) -> "RescoreStore":
        """The store saved in ``folder``, memory-mapped."""
        store = cls(dim, dtype)
        path = folder / STORE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{folder} is a quantized index folder without its rescoring store")
        store._rows = np.load(path, mmap_mode="r")
        if store._rows.ndim != 2 or store._rows.shape[1] != dim:
            raise ValueError(f"{path}: rows of shape {store._rows.shape}, expected (n, {dim})")
        if dtype == "int8" and len(store._rows):
            store._quantizer = int8_quantizer(dim, np.load(folder / RANGES_FILE))
        return store

    # -- rescoring ------------------------------------------------------------------------------
    def rescore(self, queries: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of each query's candidate ``positions`` (-1: no candidate) by inner product
        with the stored vectors: ``(scores, positions)``, best first, padded with -inf / -1."""
        n, width = positions.shape
        k = min(k, width)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        out_positions = np.full((n, k), -1, dtype=np.int64)
        chunk = max(1, _BLOCK_BYTES // max(width * self.dim * 4, 1))
        for start in range(0, n, chunk):
            block = positions[start : start + chunk]
            valid = block >= 0
            vectors = self.vectors(np.where(valid, block, 0))
            # a batched matrix-vector product (BLAS), not einsum's plain loops
            scores = np.matmul(vectors, queries[start : start + chunk, :, None])[..., 0]
            scores = np.where(valid, scores, -np.inf).astype(np.float32)
            # stable: equal scores keep the index's candidate order
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            out_scores[start : start + len(block)] = np.take_along_axis(scores, order, axis=1)
            out_positions[start : start + len(block)] = np.where(
                np.take_along_axis(valid, order, axis=1), np.take_along_axis(block, order, axis=1), -1
            )
        return out_scores, out_positions
