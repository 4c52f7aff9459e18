"""Differences paired by seed."""

from __future__ import annotations

import pytest

from retrosearch.core.retrieval.seeds import paired_differences


def test_values_pair_by_seed_and_a_seedless_value_with_every_seed():
    arm = [(2, 0.72), (1, 0.65), (3, 0.86)]
    assert paired_differences(arm, [(1, 0.6), (2, 0.7), (3, 0.8)]) == pytest.approx([0.02, 0.05, 0.06])
    assert paired_differences([(None, 0.5)], [(1, 0.6), (2, 0.7)]) == pytest.approx([-0.1, -0.2])
    assert paired_differences([(4, 0.5)], [(1, 0.6)]) == []  # no common seed: nothing to compare
