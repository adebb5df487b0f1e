"""Intervals over training runs, the distribution-free interval of the median and Holm's procedure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from msr.studies.over_runs import MIN_SEEDS_DISTRIBUTION_FREE, holm, over_runs_interval, sign_interval


def test_three_seeds_give_the_t_interval_not_their_range():
    """End-to-end Δ segm AP by seed +0.028 / -0.007 / +0.039: the 3-seed redraw gave about their range,
    [-0.007, +0.042]; the t-interval over the seeds is [-0.040, +0.080]."""
    found = over_runs_interval([0.028, -0.007, 0.039])
    assert found.seeds == 3 and found.df == 2
    assert (found.low, found.high) == (pytest.approx(-0.0397, abs=1e-4), pytest.approx(0.0797, abs=1e-4))
    assert not found.excludes_zero and found.p_value == pytest.approx(0.286, abs=1e-3)


def test_the_picture_variance_widens_the_interval_with_satterthwaite_degrees_of_freedom():
    values = [0.02, 0.03, 0.025, 0.028]
    alone, both = over_runs_interval(values), over_runs_interval(values, picture_var=0.004**2)
    between = np.var(values, ddof=1) / 4
    total = between + 0.004**2
    assert both.df == pytest.approx(3 * total**2 / between**2)
    assert both.high - both.low == pytest.approx(2 * stats.t.ppf(0.975, both.df) * math.sqrt(total))
    assert both.high - both.low > alone.high - alone.low
    same = over_runs_interval([0.01, 0.01, 0.01], picture_var=0.001**2)  # no run-to-run spread: normal
    assert same.df == math.inf and same.high - 0.01 == pytest.approx(1.959964 * 0.001)


def test_one_seed_has_no_interval_and_says_why():
    found = over_runs_interval([0.04], picture_var=1e-4)
    assert not found.has_interval and not found.excludes_zero and math.isnan(found.low)
    assert found.reason == "1 seed: no interval over training runs (needs >= 2)"
    assert found.estimate == 0.04 and found.picture_sd == pytest.approx(0.01)


def test_the_median_needs_six_seeds_for_a_distribution_free_95_percent_interval():
    assert MIN_SEEDS_DISTRIBUTION_FREE == 6
    assert sign_interval([0.1, 0.2, 0.3]) is None and sign_interval(range(5)) is None
    assert sign_interval([6, 1, 5, 2, 4, 3]) == (1, 6)  # [min, max] covers the median with p 1 - 2/64
    assert sign_interval(range(1, 9)) == (1, 8)  # k = 2 would cover with 1 - 2 * 9/256 = 0.930 < 0.95
    assert sign_interval(range(1, 10)) == (2, 8)  # k = 2: 1 - 2 * 10/512 = 0.961


def test_holm_steps_down_and_stops_at_the_first_kept_hypothesis():
    assert holm([0.01, 0.04, 0.03]) == [True, False, False]  # 0.03 > 0.05 / 2
    assert holm([0.01, 0.02, 0.03]) == [True, True, True]  # 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.03 <= 0.05
    assert holm([0.04, float("nan")]) == [True, False]  # NaN is outside the family
    assert holm([]) == []
