"""Small exact statistics behind `analysis`: Wilson intervals, stratified excess tests, scans.

Kept apart from `analysis` so the DataFrame plumbing there reads as a story and the numerics
here can be checked on their own.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson_interval(failures: np.ndarray, sessions: np.ndarray, z: float = 1.959963984540054
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion; NaN where there are no sessions.

    Unlike the textbook `p ± z·sqrt(p(1-p)/n)` it stays inside [0, 1] and is honest for
    small counts (0 failures out of 5 gives 0 %–43 %, not 0 %–0 %).
    """
    x = np.asarray(failures, dtype=float)
    n = np.asarray(sessions, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    empty = n <= 0
    low[empty] = np.nan
    high[empty] = np.nan
    return low, high


def q_values(p_values: np.ndarray, method: str = "bh") -> np.ndarray:
    """False-discovery-rate q-values, Benjamini–Hochberg ("bh") or Benjamini–Yekutieli ("by",
    valid however the tests depend on each other); NaN p-values stay NaN and are not tests."""
    p = np.asarray(p_values, dtype=float)
    q = np.full_like(p, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = stats.false_discovery_control(np.clip(p[tested], 0.0, 1.0), method=method)
    return q


def stratified_excess(n: np.ndarray, x: np.ndarray, M: np.ndarray, K: np.ndarray,
                      group: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided exact test that each group failed more than its strata predict.

    Each cell is one group in one stratum (a time bucket): the group drew `n` of the stratum's
    `M` sessions, which held `K` failures in all, and `x` of its draws failed. If the group were
    no worse than the rest of the stratum, its failure count would be hypergeometric; the sum
    over its strata is the convolution of those distributions (a stratified Fisher test).
    Returns, per group, the p-value P(sum >= observed) and a z-score of the excess (used to
    order groups whose p-values are equally tiny). Groups without cells get p = 1, z = 0.
    """
    n, x, M, K = (np.asarray(a, dtype=np.int64) for a in (n, x, M, K))
    group = np.asarray(group, dtype=np.int64)
    p_out = np.ones(groups)
    z_out = np.zeros(groups)
    informative = (n > 0) & (K > 0) & (n < M)
    # Cells where the group is the whole stratum or nothing failed carry no information.
    n, x, M, K, group = n[informative], x[informative], M[informative], K[informative], group[informative]
    observed = np.bincount(group, weights=x, minlength=groups)
    mean = np.bincount(group, weights=n * K / M, minlength=groups)
    var = np.bincount(group, weights=n * K * (M - K) * (M - n) / (M * M * (M - 1.0)),
                      minlength=groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_out = np.where(var > 0, (observed - mean) / np.sqrt(var), 0.0)
    if not len(n):
        return p_out, z_out
    lo = np.maximum(0, n + K - M)
    width = np.minimum(n, K) - lo
    k = lo[:, None] + np.arange(int(width.max()) + 1)[None, :]
    pmf = stats.hypergeom.pmf(k, M[:, None], K[:, None], n[:, None])
    pmf[k > (lo + width)[:, None]] = 0.0
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(groups + 1))
    for g in range(groups):
        cells = order[bounds[g]:bounds[g + 1]]
        if not len(cells):
            continue
        dist = np.ones(1)
        for c in cells:
            dist = np.convolve(dist, pmf[c, : width[c] + 1])
        need = int(observed[g]) - int(lo[cells].sum())
        if need <= 0:
            continue
        p_out[g] = float(min(1.0, dist[need:].sum())) if need < len(dist) else 0.0
    return p_out, z_out


def max_excess_window(excess: np.ndarray) -> tuple[int, int, float]:
    """Contiguous run [i, j] with the largest summed excess (observed minus expected).

    Returns (-1, -1, 0.0) when no run has a positive excess.
    """
    if not len(excess):
        return -1, -1, 0.0
    csum = np.concatenate([[0.0], np.cumsum(excess)])
    lowest_before = np.minimum.accumulate(csum[:-1])
    gains = csum[1:] - lowest_before
    end = int(np.argmax(gains))
    best = float(gains[end])
    if best <= 1e-12:
        return -1, -1, 0.0
    start = int(np.flatnonzero(csum[: end + 1] == lowest_before[end])[-1])
    return start, end, best


def monte_carlo_chi2(table: np.ndarray, draws: int = 10_000, seed: int = 0) -> float:
    """Exact-in-the-limit p-value of a 2×k chi-square statistic by resampling the split.

    Keeps every margin fixed (multivariate hypergeometric draws), so it stays valid when a
    status is too rare for the chi-square approximation. Seeded: the same table gives the
    same p-value.
    """
    table = np.asarray(table, dtype=np.int64)
    totals = table.sum(axis=0)
    first = int(table[0].sum())
    expected = np.outer(table.sum(axis=1), totals) / table.sum()

    def chi2(first_rows: np.ndarray) -> np.ndarray:
        second_rows = totals - first_rows
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = ((first_rows - expected[0]) ** 2 / expected[0]
                     + (second_rows - expected[1]) ** 2 / expected[1])
        return np.nansum(terms, axis=-1)

    rng = np.random.default_rng(seed)
    simulated = rng.multivariate_hypergeometric(totals, first, size=draws)
    observed = chi2(table[0])
    extreme = int((chi2(simulated) >= observed - 1e-9).sum())
    return (extreme + 1) / (draws + 1)


def max_llr_window(observed: np.ndarray, expected: np.ndarray, exhaustive_limit: int = 1500
                   ) -> tuple[int, int]:
    """Contiguous run [i, j] where observed most exceeds expected (Kulldorff's Poisson scan).

    The log-likelihood ratio O·ln(O/E) − (O − E) rewards a short burst of many failures over
    a long stretch of slight excess. `expected` must be positive. Very long series fall back
    to the largest summed excess, which is linear in time. Returns (-1, -1) without excess.
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    if len(o) > exhaustive_limit:
        i, j, _ = max_excess_window(o - e)
        return i, j
    if not len(o):
        return -1, -1
    co = np.concatenate([[0.0], np.cumsum(o)])
    ce = np.concatenate([[0.0], np.cumsum(e)])
    first, last = np.triu_indices(len(o))
    observed, expected = co[last + 1] - co[first], ce[last + 1] - ce[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where((observed > expected) & (expected > 0),
                       observed * np.log(observed / expected) - (observed - expected), 0.0)
    best = int(np.argmax(llr))
    if llr[best] <= 0:
        return -1, -1
    return int(first[best]), int(last[best])
