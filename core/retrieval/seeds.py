"""Figures over seeds: their mean and spread as the reports print them, and one arm's values minus
another's, paired by seed.

Two arms trained with the same seed share what the seed decides (data order, masks, initial
weights), so the spread of their differences says how sure a gap is; the spread of each arm
alone mostly measures the seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean and the sample sd of ``values`` (no sd for a single value: one seed has no spread)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_sd(mean: float | None, sd: float | None = None, sign: str = "") -> str:
    """``mean ± sd`` to four places as every report prints it, the mean alone without an sd and "-"
    without a mean; ``sign="+"`` signs the mean (a difference)."""
    if mean is None:
        return "-"
    return f"{mean:{sign}.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


def paired_differences(arm: Iterable[tuple[int | None, float]],
                       baseline: Iterable[tuple[int | None, float]]) -> list[float]:
    """``arm``'s values minus ``baseline``'s, for each pair of ``(seed, value)`` with the same seed; a
    value without a seed (a variant trained once, such as zero-shot) pairs with every seed."""
    base = list(baseline)
    return [value - other for seed, value in arm for other_seed, other in base
            if None in (seed, other_seed) or seed == other_seed]
