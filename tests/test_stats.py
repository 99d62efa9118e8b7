"""The exact statistics behind `analysis`, on their own, against values known by hand or by scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from anam_notebooks.analysis.stats import (
    max_excess_window,
    max_llr_window,
    monte_carlo_chi2,
    q_values,
    stratified_excess,
    wilson_interval,
)


def test_wilson_interval_known_values():
    low, high = wilson_interval(np.array([0, 1, 50, 3]), np.array([5, 2, 100, 0]))
    # Textbook Wilson 95 % bounds: 0/5 -> [0, 0.4345], 1/2 -> [0.0945, 0.9055], 50/100 -> [0.4038, 0.5962].
    assert low[:3] == pytest.approx([0.0, 0.0945, 0.4038], abs=5e-4)
    assert high[:3] == pytest.approx([0.4345, 0.9055, 0.5962], abs=5e-4)
    assert np.isnan(low[3]) and np.isnan(high[3])  # no sessions, no interval


def test_q_values_bh_and_by_known_values():
    p = np.array([0.01, 0.02, 0.03, 0.04, 0.05, np.nan])
    bh = q_values(p)
    assert bh[:5] == pytest.approx([0.05] * 5)
    assert np.isnan(bh[5])  # an untested unit stays untested
    harmonic = sum(1 / k for k in range(1, 6))
    assert q_values(p, method="by")[:5] == pytest.approx([0.05 * harmonic] * 5)
    assert q_values(np.array([0.001, 0.9]))[0] == pytest.approx(0.002)


def test_stratified_excess_one_stratum_is_the_hypergeometric_tail():
    # A pod drew 10 of the hour's 100 sessions; the hour held 20 failures; 6 of the pod's failed.
    p, z = stratified_excess(n=[10], x=[6], M=[100], K=[20], group=[0], groups=1)
    assert p[0] == pytest.approx(stats.hypergeom.sf(5, 100, 20, 10))
    assert z[0] > 0


def test_stratified_excess_two_strata_match_brute_force():
    cells = [(8, 3, 40, 6), (12, 4, 60, 9)]  # (n, x, M, K) per stratum
    observed = sum(c[1] for c in cells)
    tail = 0.0
    for counts in itertools.product(*(range(min(n, K) + 1) for n, _, M, K in cells)):
        if sum(counts) >= observed:
            tail += np.prod([stats.hypergeom.pmf(k, M, K, n) for k, (n, _, M, K) in zip(counts, cells)])
    n, x, M, K = (np.array(col) for col in zip(*cells))
    p, _ = stratified_excess(n, x, M, K, group=np.array([0, 0]), groups=2)
    assert p[0] == pytest.approx(tail, rel=1e-9)
    assert p[1] == 1.0  # a group with no cells has nothing to explain


def test_stratified_excess_ignores_uninformative_cells():
    # The group is the whole stratum (n == M) or nothing failed (K == 0): no evidence either way.
    p, z = stratified_excess(n=[50, 10], x=[50, 0], M=[50, 30], K=[50, 0], group=[0, 0], groups=1)
    assert p[0] == 1.0 and z[0] == 0.0


def test_max_excess_window_is_the_best_contiguous_run():
    assert max_excess_window(np.array([-1.0, 2, 3, -1, 4, -10])) == (1, 4, 8.0)
    assert max_excess_window(np.array([3.0, -1, 2])) == (0, 2, 4.0)  # a run from the very start
    assert max_excess_window(np.array([-1.0, -2])) == (-1, -1, 0.0)
    assert max_excess_window(np.array([])) == (-1, -1, 0.0)


def test_max_llr_window_prefers_the_burst():
    observed = np.array([2.0, 2, 10, 10, 2, 2])
    expected = np.full(6, 2.0)
    assert max_llr_window(observed, expected) == (2, 3)
    assert max_llr_window(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == (-1, -1)
    # The long-series fallback finds the same run by summed excess.
    assert max_llr_window(observed, expected, exhaustive_limit=2) == (2, 3)


def test_monte_carlo_chi2_agrees_with_the_asymptotic_test_on_large_counts():
    table = np.array([[300, 120, 80], [280, 150, 70]])
    _, asymptotic, _, _ = stats.chi2_contingency(table, correction=False)
    estimate = monte_carlo_chi2(table, draws=20_000)
    assert estimate == pytest.approx(asymptotic, abs=0.02)
    assert monte_carlo_chi2(table, draws=2_000, seed=3) == monte_carlo_chi2(table, draws=2_000, seed=3)
    # Identical rows: nothing moved, the p-value is (close to) one.
    assert monte_carlo_chi2(np.array([[10, 5, 1], [10, 5, 1]]), draws=2_000) > 0.9
