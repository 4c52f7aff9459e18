"""Figures over seeds: one arm's values minus another's, paired by seed.

Two arms trained with the same seed share what the seed decides (data order, masks, initial
weights), so the spread of their differences says how sure a gap is; the spread of each arm
alone mostly measures the seeds.
"""

from __future__ import annotations

from collections.abc import Iterable


def paired_differences(arm: Iterable[tuple[int | None, float]],
                       baseline: Iterable[tuple[int | None, float]]) -> list[float]:
    """``arm``'s values minus ``baseline``'s, for each pair of ``(seed, value)`` with the same seed; a
    value without a seed (a variant trained once, such as zero-shot) pairs with every seed."""
    base = list(baseline)
    return [value - other for seed, value in arm for other_seed, other in base
            if None in (seed, other_seed) or seed == other_seed]
