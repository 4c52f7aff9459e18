"""How spread an encoder's vectors are: the mean cosine between distinct vectors of one set.

An untrained or collapsed encoder maps every text near one direction (a mean cosine close to 1),
and then ranks by differences too small for any fine-tuning step to use; a working retriever's
query vectors sit far apart (all-MiniLM-L6-v2's SciFact queries: about 0.1). Reported beside the
retrieval figures, it tells a model that ranks badly because it cannot tell texts apart from one
that tells them apart in the wrong way.
"""

from __future__ import annotations

import numpy as np

#: Rows read at most (the first ones): the mean of ``n (n - 1)`` pairs settles long before this.
LIMIT = 2000


def mean_cosine(vectors: np.ndarray, limit: int = LIMIT) -> float | None:
    """Mean cosine similarity over the ordered pairs of distinct rows among the first ``limit`` rows
    of ``vectors`` ``[n, d]``; None with fewer than two rows. Zero rows count as orthogonal to all."""
    rows = np.asarray(vectors[:limit], dtype=np.float64)
    n = rows.shape[0]
    if n < 2:
        return None
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    # sum over all pairs = |sum of unit rows|^2; take out the diagonal (each row with itself)
    total = float(np.square(unit.sum(axis=0)).sum()) - float(np.square(unit).sum())
    return total / (n * (n - 1))
