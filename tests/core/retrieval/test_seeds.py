"""Differences paired by seed."""

from __future__ import annotations

import pytest

from retrosearch.core.retrieval.seeds import format_mean_sd, mean_sd, paired_differences


def test_values_pair_by_seed_and_a_seedless_value_with_every_seed():
    arm = [(2, 0.72), (1, 0.65), (3, 0.86)]
    assert paired_differences(arm, [(1, 0.6), (2, 0.7), (3, 0.8)]) == pytest.approx([0.02, 0.05, 0.06])
    assert paired_differences([(None, 0.5)], [(1, 0.6), (2, 0.7)]) == pytest.approx([-0.1, -0.2])
    assert paired_differences([(4, 0.5)], [(1, 0.6)]) == []  # no common seed: nothing to compare


def test_mean_sd_is_the_sample_spread_and_one_seed_has_none():
    mean, sd = mean_sd([0.30, 0.32, 0.34])
    assert mean == pytest.approx(0.32) and sd == pytest.approx(0.02)
    assert mean_sd([0.5]) == (0.5, None)


def test_the_reports_format_signs_differences_and_marks_a_missing_figure():
    assert format_mean_sd(0.32, 0.02) == "0.3200 ± 0.0200"
    assert format_mean_sd(0.0156, 0.0026, sign="+") == "+0.0156 ± 0.0026"
    assert format_mean_sd(-0.0026, None, sign="+") == "-0.0026"
    assert format_mean_sd(None, 0.1) == "-"
