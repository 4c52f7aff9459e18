"""Cutting vectors to their first N dimensions: what a Matryoshka-trained encoder is for.

A Matryoshka encoder (trained with the loss summed over several leading-dimension prefixes, see
:mod:`retrosearch.trainers.finetune.loss`) packs the most information into the first dimensions,
so its vectors cut to 256, 128 or 64 dimensions still retrieve well. The cut vector is
renormalised when the encoder emits unit vectors, so inner product stays cosine similarity; a
``dot`` encoder's cut vectors keep their scale. The encoder runtime (the ``dimensions`` encoder
setting) and the service (``dimensions`` of ``/v1/embeddings``) both cut with :func:`truncate`, so
the same text gives the same vector either way.
"""

from __future__ import annotations

import hashlib

import numpy as np

from retrosearch.core.errors import UserError


class DimensionsError(UserError, ValueError):
    """A target dimension the encoder cannot give (larger than its own)."""


def check_dimensions(dimensions: int | None, native: int, model: str) -> int:
    """The dimension vectors will have: ``dimensions`` if given, else the model's ``native`` one."""
    if dimensions is None:
        return native
    if not 0 < dimensions <= native:
        raise DimensionsError(f"dimensions={dimensions}: model {model!r} gives {native}-dimensional vectors; "
                              f"choose 1 to {native}")
    return dimensions


def truncate(vectors: np.ndarray, dimensions: int, renormalize: bool) -> np.ndarray:
    """The first ``dimensions`` columns of ``vectors`` (float32), unit length again if ``renormalize``."""
    cut = np.ascontiguousarray(vectors[:, :dimensions], dtype=np.float32)
    if renormalize and len(cut):
        norms = np.linalg.norm(cut, axis=1, keepdims=True)
        cut /= np.maximum(norms, np.finfo(np.float32).tiny)
    return cut


def fingerprint_at(model_fingerprint: str, dimensions: int, native: int) -> str:
    """The fingerprint of a model's vectors cut to ``dimensions``: the model's own when uncut, else a
    distinct one, so indices and caches of cut vectors never pass for the full ones."""
    if dimensions == native:
        return model_fingerprint
    return hashlib.sha256(f"{model_fingerprint}/dimensions={dimensions}".encode()).hexdigest()
