"""Small exact statistics behind `analysis`: Wilson intervals, stratified excess tests, scans.

Kept apart from `analysis` so the DataFrame plumbing there reads as a story and the numerics
here can be checked on their own.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special, stats


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
                      group: np.ndarray, groups: int, exact_limit: float = 400.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """One-sided exact test that each group failed more than its strata predict.

    Each cell is one group in one stratum (a time bucket): the group drew `n` of the stratum's
    `M` sessions, which held `K` failures in all, and `x` of its draws failed. If the group were
    no worse than the rest of the stratum, its failure count would be hypergeometric; the sum
    over its strata is the convolution of those distributions (a stratified Fisher test).
    Returns, per group, the p-value P(sum >= observed) and a z-score of the excess (used to
    order groups whose p-values are equally tiny). Groups without cells get p = 1, z = 0.
    Groups less than 1.5 standard errors above their expectation get the normal tail (p above
    6 %: accurate there, and never significant after correction at the usual 5 %). Groups with
    many failures to expect (variance above `exact_limit`) use the binomial tail with the
    same mean instead: for independent trials it bounds the exact tail from above past the
    mean (Hoeffding 1956), drawing without replacement only narrows the spread, so it errs on
    the side of fewer alarms; and it takes one call where the convolution would take thousands.
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
    drawn = np.bincount(group, weights=n, minlength=groups)
    large = var > exact_limit
    if large.any():
        tail = stats.binom.sf(observed[large] - 1, drawn[large].astype(np.int64),
                              np.clip(mean[large] / drawn[large], 0.0, 1.0))
        p_out[large] = np.where(observed[large] > mean[large], tail, 1.0)
    # Under 1.5 standard errors of excess the p-value is above 6 %, where the normal tail is
    # accurate and far from any threshold (a q-value is never below its p-value).
    modest = ~large & (z_out < 1.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_out[modest] = np.where(var[modest] > 0,
                                 stats.norm.sf((observed[modest] - 0.5 - mean[modest])
                                               / np.sqrt(var[modest])), 1.0)
    small = ~(large | modest)[group]
    n, M, K, group = n[small], M[small], K[small], group[small]
    if not len(n):
        return p_out, z_out
    lo = np.maximum(0, n + K - M)
    width = np.minimum(n, K) - lo
    # Each cell's pmf over its own support, laid end to end (no padding to the widest cell).
    starts = np.concatenate([[0], np.cumsum(width + 1)])
    cell = np.repeat(np.arange(len(n)), width + 1)
    k = lo[cell] + np.arange(starts[-1]) - starts[cell]
    pmf = _hypergeom_pmf(k, M[cell], K[cell], n[cell])
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(groups + 1))
    for g in range(groups):
        cells = order[bounds[g]:bounds[g + 1]]
        if not len(cells):
            continue
        need = int(observed[g]) - int(lo[cells].sum())
        if need <= 0:
            continue
        dist = np.ones(1)
        for c in cells:
            dist = np.convolve(dist, pmf[starts[c]:starts[c + 1]])
        p_out[g] = float(min(1.0, dist[need:].sum())) if need < len(dist) else 0.0
    return p_out, z_out


def _hypergeom_pmf(k: np.ndarray, M: np.ndarray, K: np.ndarray, n: np.ndarray) -> np.ndarray:
    """P(X = k) for X ~ Hypergeometric(M sessions, K failures, n drawn), from log-gammas
    (the same values as scipy.stats.hypergeom.pmf, without its per-call overhead)."""
    def log_choose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(special.gammaln(a + 1.0) - special.gammaln(b + 1.0)
                          - special.gammaln(a - b + 1.0))
    k, M, K, n = (np.asarray(v, dtype=float) for v in (k, M, K, n))
    return np.asarray(np.exp(log_choose(K, k) + log_choose(M - K, n - k) - log_choose(M, n)))


def bernoulli_llr(observed: np.ndarray, sessions: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Log-likelihood ratio of "these sessions fail at observed/sessions" against "at
    expected/sessions" (Kulldorff's Bernoulli scan statistic); 0 where there is no excess.

    It is also a bound: by Hoeffding's inequality, if each session failed independently with
    chances averaging expected/sessions (or failures were drawn without replacement within time
    buckets, the conditional null of the exact test), P(at least `observed`) <= exp(-llr).
    """
    o = np.asarray(observed, dtype=float)
    n = np.asarray(sessions, dtype=float)
    e = np.asarray(expected, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.where(n - o > 0, (n - o) * np.log((n - o) / (n - e)), 0.0)
        llr = np.where((o > e) & (e > 0) & (n > e), o * np.log(o / e) + rest, 0.0)
    return np.nan_to_num(llr, nan=0.0, posinf=0.0)


def scan_windows(observed: np.ndarray, sessions: np.ndarray, expected: np.ndarray,
                 max_length: int = 168) -> tuple[int, int, float, int]:
    """The run of consecutive buckets [i, j] where failures most exceed what was expected.

    Every run of up to `max_length` buckets is scored with `bernoulli_llr`. Returns (i, j,
    its llr, how many runs were searched); (-1, -1, 0.0, count) without any excess. The count
    is what the scan's multiplicity correction multiplies by (see `scan_p_value`).
    """
    o = np.asarray(observed, dtype=float)
    n = np.asarray(sessions, dtype=float)
    e = np.asarray(expected, dtype=float)
    t = len(o)
    longest = max(1, min(t, int(max_length)))
    searched = int(longest * t - longest * (longest - 1) // 2)
    if not t:
        return -1, -1, 0.0, 0
    co, cn, ce = (np.concatenate([[0.0], np.cumsum(a)]) for a in (o, n, e))
    best, best_i, best_j = 0.0, -1, -1
    if t * (t + 1) // 2 <= 250_000:
        i, j = _windows(t)
        llr = bernoulli_llr(co[j + 1] - co[i], cn[j + 1] - cn[i], ce[j + 1] - ce[i])
        llr[j - i >= longest] = 0.0
        k = int(np.argmax(llr))
        if llr[k] > 0:
            best, best_i, best_j = float(llr[k]), int(i[k]), int(j[k])
        return best_i, best_j, best, searched
    for length in range(1, longest + 1):
        llr = bernoulli_llr(co[length:] - co[:-length], cn[length:] - cn[:-length],
                            ce[length:] - ce[:-length])
        k = int(np.argmax(llr))
        if llr[k] > best:
            best, best_i, best_j = float(llr[k]), k, k + length - 1
    return best_i, best_j, best, searched


@lru_cache(maxsize=64)
def _windows(t: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last bucket of every run in a series of `t` buckets (cached: reused per unit)."""
    return np.triu_indices(t)


def scan_p_value(llr: float, searched: int) -> float:
    """A valid p-value for the best of `searched` windows: Bonferroni over the windows of the
    Hoeffding bound exp(-llr) that each window's own tail obeys, capped at 1."""
    if searched <= 0 or llr <= 0:
        return 1.0
    return float(min(1.0, searched * np.exp(-llr)))


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
