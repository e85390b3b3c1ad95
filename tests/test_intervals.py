"""The interval of an energy reduction (a ratio of two means of one run's repeats), of a mean and of a
least-squares slope."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tta_energy.intervals import ratio_interval, slope_interval, t_half_width, t_half_width_of


def test_the_reduction_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    """A launch-bound default (10% spread) against a steady lever (3%), 3 repeats each, as the levers runs
    measure them: the interval holds the true 5.45x in about 95% of 4000 seeded runs."""
    rng = np.random.default_rng(0)
    true_none, true_lever = 600.0, 110.0
    covered = 0
    trials = 4000
    for _ in range(trials):
        none = rng.normal(true_none, 0.10 * true_none, 3)
        lever = rng.normal(true_lever, 0.03 * true_lever, 3)
        low, high = ratio_interval(none.mean(), none.std(ddof=1), 3, lever.mean(), lever.std(ddof=1), 3)
        covered += low <= true_none / true_lever <= high
    assert 0.93 <= covered / trials <= 0.98


def test_the_reduction_interval_is_symmetric_on_the_log_scale_and_undefined_with_one_repeat():
    low, high = ratio_interval(600.0, 60.0, 3, 110.0, 3.3, 3)
    assert low < 600.0 / 110.0 < high
    assert math.log(600.0 / 110.0) - math.log(low) == pytest.approx(math.log(high) - math.log(600.0 / 110.0))
    assert ratio_interval(600.0, 0.0, 3, 100.0, 0.0, 3) == (6.0, 6.0)  # no spread: the ratio itself
    assert all(math.isnan(v) for v in ratio_interval(600.0, float("nan"), 1, 110.0, 3.3, 3))
    assert all(math.isnan(v) for v in ratio_interval(600.0, 60.0, 3, 0.0, 0.0, 3))


def test_the_half_width_from_a_standard_deviation_is_the_half_width_of_the_values():
    values = np.array([10.0, 12.0, 11.0, 15.0])
    half = t_half_width_of(values.std(ddof=1), len(values))
    assert isinstance(half, float) and half == pytest.approx(t_half_width(values), rel=1e-12)
    assert half == pytest.approx(3.182446305284263 * values.std(ddof=1) / 2, rel=1e-12)  # t(0.975, 3)
    assert math.isnan(t_half_width_of(1.0, 1))  # one value: no interval
    # a column of cells at once, aligned by position; a cell of one value gets NaN
    sds, counts = pd.Series([2.0, 1.0, 4.0]), pd.Series([5, 1, 2])
    every = t_half_width_of(sds, counts)
    assert every[0] == pytest.approx(t_half_width_of(2.0, 5)) and math.isnan(every[1])
    assert every[2] == pytest.approx(12.706204736174698 * 4.0 / math.sqrt(2))


def test_the_slope_interval_is_student_t_on_the_standard_error_with_n_minus_2_degrees_of_freedom():
    low, high = slope_interval(5.0, 0.2, 6)
    assert (low + high) / 2 == pytest.approx(5.0)
    assert high - 5.0 == pytest.approx(2.7764451051977934 * 0.2, rel=1e-12)  # t(0.975, 4)
    low90, high90 = slope_interval(5.0, 0.2, 6, confidence=0.9)
    assert high90 - 5.0 == pytest.approx(2.1318467863266495 * 0.2, rel=1e-12)  # t(0.95, 4)
    assert low < low90 < 5.0 < high90 < high
    # two points fit any line exactly, and a missing standard error leaves the slope without an interval
    assert all(math.isnan(v) for v in slope_interval(5.0, 0.0, 2))
    assert all(math.isnan(v) for v in slope_interval(5.0, float("nan"), 6))
