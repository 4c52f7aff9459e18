"""The codes of OpenSearch's byte and binary k-NN fields, and their scores turned into similarities.

OpenSearch k-NN takes ``"data_type": "byte"`` vectors (signed 8-bit values, searched by the inner
product of the codes) and ``"data_type": "binary"`` vectors (packed bits as signed bytes, searched
by Hamming distance) on the Lucene engine. It quantizes neither: the codes are made here.

* ``int8``: FAISS's 8-bit scalar quantizer (``QT_8bit``, per-dimension ranges trained on the first
  vectors written; one range for all dimensions when those are fewer than :data:`MIN_TRAIN`),
  shifted to signed bytes. A stored code ``c`` decodes to
  ``x = vmin + (c + 128.5) * vdiff / 255``, so ``x . q = offset(q) + sum_i c_i * w_i`` with
  ``w = q * vdiff / 255``: the query is sent as ``w`` scaled to signed bytes, which makes the
  codes' inner product rank like the decoded vectors' (an asymmetric distance: the query is not
  quantized to the documents' grid), and the scale and offset turn a code score back into an
  approximate inner product.
* ``binary``: the sign bits of each vector (FAISS's ``real_to_binary``, as the FAISS binary
  indices), 1 bit per dimension; a Hamming distance ``h`` over ``dim`` bits reads as the share of
  agreeing signs, ``1 - 2 h / dim`` (the FAISS binary kinds' codes-only score).

Both kinds keep the float32 vectors in a ``binary`` field beside the codes (base64 in ``_source``,
not indexed), from which the candidates are rescored.
"""

from __future__ import annotations

import base64

import faiss
import numpy as np

from retrosearch.core.index.rescoring import int8_quantizer, sign_bits

# Where the FAISS quantizer's 8-bit codes (0..255) meet OpenSearch's signed bytes (-128..127).
_SHIFT = 128
# Fewer first vectors than this train one symmetric range for every dimension instead of one per
# dimension: a handful of vectors gives per-dimension ranges far too narrow (one vector, zero).
MIN_TRAIN = 1000
# Room beyond the largest value of such a small first batch, for the vectors written after it.
_HEADROOM = 1.5


class Int8Codes:
    """Signed 8-bit codes of vectors under trained per-dimension ranges (FAISS ``QT_8bit``)."""

    def __init__(self, ranges: np.ndarray) -> None:
        self.ranges = np.ascontiguousarray(ranges, dtype=np.float32).ravel()
        if len(self.ranges) % 2:
            raise ValueError(f"int8 ranges hold a minimum and a width per dimension, "
                             f"got {len(self.ranges)} values")
        self.dim = len(self.ranges) // 2
        self._quantizer = int8_quantizer(self.dim, self.ranges)

    @classmethod
    def train(cls, vectors: np.ndarray) -> "Int8Codes":
        """Ranges trained on ``vectors``: FAISS's min-max range per dimension, or with fewer than
        :data:`MIN_TRAIN` vectors one range ``[-b, b]`` for all, ``b`` 1.5 times their largest value."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) < MIN_TRAIN:
            bound = _HEADROOM * float(np.abs(vectors).max(initial=0.0)) or 1.0
            dim = vectors.shape[1]
            return cls(np.concatenate([np.full(dim, -bound), np.full(dim, 2 * bound)]))
        quantizer = int8_quantizer(vectors.shape[1])
        quantizer.train(vectors)
        return cls(faiss.vector_to_array(quantizer.trained))

    @property
    def vmin(self) -> np.ndarray:
        return self.ranges[: self.dim]

    @property
    def vdiff(self) -> np.ndarray:
        return self.ranges[self.dim :]

    def documents(self, vectors: np.ndarray) -> np.ndarray:
        """The stored codes: ``(n, dim)`` int8 (values outside the trained ranges are clipped)."""
        codes = self._quantizer.compute_codes(np.ascontiguousarray(vectors, dtype=np.float32))
        return (codes.astype(np.int16) - _SHIFT).astype(np.int8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The vectors stored codes stand for (FAISS's decoding)."""
        shifted = (np.asarray(codes, dtype=np.int16) + _SHIFT).astype(np.uint8)
        return self._quantizer.decode(np.ascontiguousarray(shifted))

    def queries(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(codes, scale, offset)`` of query vectors: int8 ``codes`` to search with, and per query the
        ``scale`` and ``offset`` with which a code inner product ``s`` approximates the inner product
        with the decoded document, ``offset + scale * s``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        weights = vectors * (self.vdiff / 255.0)
        peak = np.abs(weights).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(weights / scale[:, None]), -127, 127).astype(np.int8)
        offset = vectors @ (self.vmin + (_SHIFT + 0.5) * self.vdiff / 255.0)
        return codes, scale, offset.astype(np.float32)


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """Packed sign bits as OpenSearch's binary field takes them: ``(n, dim / 8)`` signed bytes."""
    return sign_bits(vectors).view(np.int8)


def hamming_similarity(hamming: float, dim: int) -> float:
    """The share of agreeing signs, ``1 - 2 h / dim`` (the FAISS binary kinds' codes-only score)."""
    return 1.0 - 2.0 * hamming / dim


def hamming_from_score(score: float) -> float:
    """The Hamming distance behind OpenSearch's ``hamming`` score ``1 / (1 + h)``."""
    return 1.0 / score - 1.0


def pack_floats(vector: np.ndarray) -> str:
    """A float32 vector as the base64 text of a ``binary`` field (little-endian)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def unpack_floats(text: str, dim: int) -> np.ndarray:
    """The float32 vector :func:`pack_floats` wrote; a wrong length is a ValueError."""
    vector = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if len(vector) != dim:
        raise ValueError(f"a stored rescoring vector has {len(vector)} dimensions, expected {dim}")
    return vector.astype(np.float32)
