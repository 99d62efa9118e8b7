"""The window scan of `rank_suspects`: each unit against its own history, calibrated by simulation.

Runs on counts only (`analysis.counts`): for every unit of a level at once, per time bucket,
its sessions and failures and the fleet's. In plain words (the figures are in the `analysis`
package docstring):

1. **What a unit should fail in each hour**: its own failure rate over the whole period, times
   how unusual that hour was for the *rest* of the fleet. The rest's hour-to-hour swings are
   mostly chance, so each hour's effect is shrunk toward "no effect" as far as chance explains
   it (empirical Bayes: a normal prior whose spread is what the rest's swings have beyond their
   sampling noise). A unit that is most of the traffic keeps its power (its own history is the
   comparison), and an hour in which everyone fails raises every unit's expectation with it.
   A fleet that fails more at some hours of every day (its even and odd days agree on which,
   `repeats_daily`) has its hours shrunk toward their time of day instead of toward "no
   effect" (`daily_cycle`, pooled over the other days), and the fleet's own history is
   weighted by that cycle: a busy afternoon is not an outage because it comes every day.
2. **The worst window**: Kulldorff's Poisson scan. For every window (a geometric grid of
   lengths from one bucket to the whole period, each slid along in steps of half its
   length), the log-likelihood ratio of "this unit failed at one rate inside the window and
   another outside" against "at its usual rate throughout, hour effects allowed for". The
   largest is the unit's statistic. The window reported is placed bucket by bucket around
   it by the same ratio counted on sessions (Kulldorff's Bernoulli form, which counts the
   healthy sessions too, so a sharp outage does not stretch over mildly worse hours next to
   it) and trimmed to the hours the unit served.
3. **How surprising that is**: the same statistic on `draws` simulated histories of the unit,
   in which its failures are dealt at random among its sessions (conditional on the unit's
   total failures and each bucket's sessions, weighted by the hour effects: the Monte Carlo
   test of SaTScan, without replacement as each session fails at most once). The p-value is
   the share of simulated histories scoring at least as high (ties broken at random, so it
   is uniform on quiet data); beyond the simulations' reach (fewer than ten as high) it
   comes from a Gumbel tail fitted to them, whose scale is fixed at 1 (a likelihood ratio's
   own tail) and whose location is matched at the simulations' 90th percentile (SaTScan's
   Gumbel p-value). A unit that many simulations beat early stops after 9 or 39 of them.
   Each unit draws from a random stream of its own, seeded by its level's name and its label,
   so its p-value does not depend on which other units are scanned with it, and the same
   counts give the same p-values whichever engine counted them. Of numpy's two exact ways to
   deal the failures, each unit uses the cheaper for its size (see `_method`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, TypeVar

import numpy as np

#: Simulated histories per unit (p-values resolve down to 1 / (draws + 1) before the Gumbel tail).
DRAWS = 199
# Below this many simulated statistics at least as high, the Gumbel tail gives the p-value.
TAIL_COUNT = 10
# A bucket's own deviation counts (see `hour_effects`) where the rest of the fleet expects this
# many failures in it.
MIN_EXPECTED = 5.0
# ... and a bucket of the rest failing this many standard errors above its usual rate is a spike.
SPIKE_Z = 3.0
# A daily cycle is looked for (see `daily_cycle`) when the buckets span at least this many days,
MIN_DAYS = 3
# ... and allowed for when the even and odd days agree this far beyond chance (`repeats_daily`).
CYCLE_Z = 3.0
# A unit whose Gumbel p-value is below this after 39 simulations none of which reached it stops.
CERTAIN = 1e-6
# A unit this many simulated histories beat early on stops simulating (see `_simulated_p`).
STOP_COUNT = 5
# Window statistics computed at once in a block of simulated histories (see `_maxima`).
BLOCK = 200_000
_EULER_90 = float(np.log(-np.log(0.9)))   # Gumbel: F(x) = 0.9 at x = location - log(-log 0.9)


@dataclass(frozen=True)
class ScanResult:
    """Per unit of a level (rows aligned with the units passed in).

    Attributes
    ----------
    llr
        The largest log-likelihood ratio over windows (0 without any excess).
    first, last
        The window's first and last bucket (-1 without excess).
    observed, expected
        Failures in the window, and what the unit's rate *outside* the window predicts there
        (hour effects allowed for): `observed - expected` is the window's excess.
    sessions
        Sessions of the unit in the window.
    p_value
        How often chance alone scores as high (see the module docstring).
    """

    llr: np.ndarray
    first: np.ndarray
    last: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    sessions: np.ndarray
    p_value: np.ndarray


@lru_cache(maxsize=32)
def window_grid(buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """First bucket and length of every window scanned over `buckets` buckets: lengths 1, 2, 3,
    4, 6, 8, 11, ... (about ×1.4 each step) up to the whole period, starts every half length
    (every bucket up to 3 buckets long)."""
    lengths: list[int] = []
    length = 1
    while length < buckets:
        lengths.append(length)
        length = max(length + 1, int(round(length * 1.4)))
    lengths.append(max(buckets, 1))
    firsts, sizes = [], []
    for length in lengths:
        stride = max(1, length // 2)
        start = np.arange(0, buckets - length + 1, stride)
        if len(start) and start[-1] != buckets - length:
            start = np.append(start, buckets - length)
        firsts.append(start)
        sizes.append(np.full(len(start), length))
    return np.concatenate(firsts).astype(np.int64), np.concatenate(sizes).astype(np.int64)


def hour_effects(sessions: np.ndarray, failures: np.ndarray, fleet_sessions: np.ndarray,
                 fleet_failures: np.ndarray, cycle: np.ndarray | None = None) -> np.ndarray:
    """Per unit and bucket, how much more (>1) or less (<1) the rest of the fleet failed in that
    bucket than over the whole period, shrunk toward 1 by empirical Bayes (U × B).

    The rest of bucket b failed at rate r_b on n_b sessions against r overall. Chance alone
    spreads r_b by r(1-r)/n_b; what spread there is beyond that (tau², by DerSimonian and
    Laird's moments, never below 0) is real hour-to-hour variation. Each bucket's effect keeps the share
    tau² / (tau² + r(1-r)/n_b) of its deviation: all of it for a well-measured bucket on a fleet
    that truly varies, none on a fleet whose swings are all chance. A lone hour far outside
    chance, which one normal prior would shrink as noise, is not weighted here: `spikes`
    finds it and `scan_level` leaves it out of the unit's scan.

    With a `cycle` (U × B, see `daily_cycle`), "usual" is the rest's rate at that time of day
    (r·cycle_b) instead of its flat rate r: each bucket is shrunk toward its time of day, and
    only what it has beyond that is its own.
    """
    rest_n, rest_x, flat, rate = _rest(sessions, failures, fleet_sessions, fleet_failures, cycle)
    seen = rest_n > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(seen, rest_x / np.where(seen, rest_n, 1.0), rate)
        noise = np.where(seen, rate * (1 - rate) / np.where(seen, rest_n, 1.0), np.inf)
    # tau² by DerSimonian and Laird's moment estimator: each bucket weighted by its precision,
    # so a bucket of three sessions cannot pass for real variation.
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(seen & (noise > 0), 1.0 / np.where(noise > 0, noise, 1.0), 0.0)
    tau2 = _between_variance(w, raw, rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.where(seen & (tau2 > 0), tau2 / (tau2 + noise), 0.0)
        effect = np.where(flat > 0, (rate + keep * (raw - rate)) / np.where(flat > 0, flat, 1.0), 1.0)
    return np.asarray(np.clip(effect, 1e-3, None))


def _rest(sessions: np.ndarray, failures: np.ndarray, fleet_sessions: np.ndarray,
          fleet_failures: np.ndarray, cycle: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rest of the fleet beside each unit (U × B): its sessions and failures per bucket,
    its flat rate over the whole period (U × 1), and its usual rate per bucket (the flat rate
    times the daily `cycle`, or the flat rate without one)."""
    rest_n = (fleet_sessions[None, :] - sessions).astype(float)
    rest_x = (fleet_failures[None, :] - failures).astype(float)
    total_n = rest_n.sum(axis=1, keepdims=True)
    flat = np.where(total_n > 0, rest_x.sum(axis=1, keepdims=True) / np.maximum(total_n, 1), 0.0)
    rate = flat if cycle is None else np.clip(flat * cycle, 0.0, 1.0)
    return rest_n, rest_x, flat, rate


def _between_variance(w: np.ndarray, raw: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per row, the spread of the true rates beyond chance (tau², DerSimonian and Laird's moment
    estimator, never below 0): `raw` rates with precisions `w` (0: not measured) around
    `centre`, what each would be without any real variation."""
    q_stat = (w * (raw - centre) ** 2).sum(axis=1, keepdims=True)
    w_sum = w.sum(axis=1, keepdims=True)
    scale = w_sum - (w ** 2).sum(axis=1, keepdims=True) / np.where(w_sum > 0, w_sum, 1.0)
    dof = np.maximum((w > 0).sum(axis=1, keepdims=True) - 1, 0)
    return np.asarray(np.where(scale > 0, np.maximum(q_stat - dof, 0.0) / np.where(scale > 0, scale, 1.0), 0.0))


def spikes(sessions: np.ndarray, failures: np.ndarray, fleet_sessions: np.ndarray,
           fleet_failures: np.ndarray, cycle: np.ndarray | None = None) -> np.ndarray:
    """Per unit and bucket, whether the rest of the fleet failed far beyond chance in that
    bucket (more than SPIKE_Z standard errors above its usual rate at that time of day,
    `cycle` as in `hour_effects`, expecting at least MIN_EXPECTED failures there): an outage
    elsewhere, or everywhere (U × B)."""
    rest_n, rest_x, _, rate = _rest(sessions, failures, fleet_sessions, fleet_failures, cycle)
    measured = (rest_n > 0) & (rest_n * rate >= MIN_EXPECTED)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (rest_x - rest_n * rate) / np.sqrt(rest_n * rate * (1 - rate))
    return np.asarray(measured & (z > SPIKE_Z))


def day_slots(origin_ns: int, step_ns: int, buckets: int) -> np.ndarray | None:
    """Per bucket, its place in the day (0 .. buckets per day - 1, UTC), when the bucket width
    divides a day and the buckets span at least MIN_DAYS days; None otherwise (no daily cycle
    can be told from the data)."""
    day = 86_400 * 10 ** 9
    if step_ns <= 0 or day % step_ns or day // step_ns < 2 or buckets < MIN_DAYS * (day // step_ns):
        return None
    per_day = day // step_ns
    return np.asarray(((origin_ns % day) // step_ns + np.arange(buckets)) % per_day, dtype=np.int64)


def repeats_daily(sessions: np.ndarray, failures: np.ndarray, slots: np.ndarray | None) -> bool:
    """Whether the fleet's failure rate follows the time of day the same way on different days
    (per bucket `sessions` and `failures` of the whole fleet, `slots` from `day_slots`).

    The even days' failures by time of day, as standard scores against the fleet's overall
    rate, are correlated with the odd days'. Without a daily cycle the two halves are
    independent and the correlation times √(times of day) is about standard normal; a cycle
    makes both halves high at the same hours. An outage falls on one day, in one half only,
    so it does not pass for a cycle. A cycle is told at CYCLE_Z (one quiet fleet in about a
    thousand); weaker ones are left to the hour effects."""
    if slots is None:
        return False
    n = np.asarray(sessions, dtype=float)
    x = np.asarray(failures, dtype=float)
    per_day = int(slots.max()) + 1
    day = np.arange(len(slots)) // per_day % 2
    rate = x.sum() / n.sum() if n.sum() else 0.0
    if not 0 < rate < 1:
        return False
    index = day * per_day + slots
    half_n = np.bincount(index, weights=n, minlength=2 * per_day).reshape(2, per_day)
    half_x = np.bincount(index, weights=x, minlength=2 * per_day).reshape(2, per_day)
    both = (half_n > 0).all(axis=0)
    if both.sum() < 3:
        return False
    z = (half_x[:, both] - half_n[:, both] * rate) / np.sqrt(half_n[:, both] * rate * (1 - rate))
    spread = np.sqrt((z[0] ** 2).sum() * (z[1] ** 2).sum())
    return bool(spread > 0 and (z[0] * z[1]).sum() / spread * np.sqrt(both.sum()) > CYCLE_Z)


def daily_cycle(sessions: np.ndarray, failures: np.ndarray, slots: np.ndarray | None) -> np.ndarray | None:
    """Per row and bucket, how much more (>1) or less (<1) the row failed at that time of day
    on the *other* days than over the whole period, shrunk toward 1 by empirical Bayes (U × B);
    None without `slots` (see `day_slots`).

    Many fleets fail more at their busiest hours every day. One hour alone is too noisy to
    show it (a few failures), but the same hour of every other day together is not: each time
    of day's rate is pooled over the days, the spread between times of day beyond chance is
    estimated (tau², DerSimonian and Laird, as in `hour_effects`) and each bucket keeps the
    share tau² / (tau² + noise) of its time of day's deviation. The bucket's own day is left
    out, so an outage does not raise what its own hours are expected to fail; a fleet without
    a daily cycle gets tau² = 0 and a cycle of 1 everywhere."""
    if slots is None:
        return None
    n = np.asarray(sessions, dtype=float)
    x = np.asarray(failures, dtype=float)
    rows, buckets = n.shape
    per_day = int(slots.max()) + 1
    index = (np.arange(rows)[:, None] * per_day + slots[None, :]).ravel()
    slot_n = np.bincount(index, weights=n.ravel(), minlength=rows * per_day).reshape(rows, per_day)
    slot_x = np.bincount(index, weights=x.ravel(), minlength=rows * per_day).reshape(rows, per_day)
    total_n = slot_n.sum(axis=1, keepdims=True)
    rate = np.where(total_n > 0, slot_x.sum(axis=1, keepdims=True) / np.maximum(total_n, 1), 0.0)
    base = rate * (1 - rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        seen = (slot_n > 0) & (base > 0)
        w = np.where(seen, slot_n / np.where(base > 0, base, 1.0), 0.0)
        raw = np.where(slot_n > 0, slot_x / np.where(slot_n > 0, slot_n, 1.0), rate)
    tau2 = _between_variance(w, raw, rate)
    other_n = slot_n[:, slots] - n                              # the same time, other days
    other_x = slot_x[:, slots] - x
    with np.errstate(divide="ignore", invalid="ignore"):
        other = np.where(other_n > 0, other_x / np.where(other_n > 0, other_n, 1.0), rate)
        noise = np.where(other_n > 0, base / np.where(other_n > 0, other_n, 1.0), np.inf)
        keep = np.where((tau2 > 0) & (other_n > 0), tau2 / (tau2 + noise), 0.0)
        cycle = np.where(rate > 0, (rate + keep * (other - rate)) / np.where(rate > 0, rate, 1.0), 1.0)
    return np.asarray(np.clip(cycle, 1e-3, None))


@lru_cache(maxsize=8)
def _xlogx(top: int) -> np.ndarray:
    k = np.arange(top + 1, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(k > 0, k * np.log(np.where(k > 0, k, 1.0)), 0.0).astype(np.float32)


def _pairs(total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each unit, x·log(x) + (t - x)·log(t - x) for x = 0..t (t its failures), one table
    for every unit end to end in float32, and where each unit's part starts."""
    total = np.asarray(total, dtype=np.int64)
    sizes = total + 1
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    table = _xlogx(int(total.max()) if len(total) else 0)
    x = np.arange(int(sizes.sum())) - np.repeat(offset, sizes)
    return table[x] + table[np.repeat(total, sizes) - x], offset


def _llr(o: np.ndarray, value: np.ndarray, slope: np.ndarray, base: np.ndarray,
         e: np.ndarray) -> np.ndarray:
    """Kulldorff's conditional Poisson log-likelihood ratio for integer window counts `o` of a
    unit with t failures and window expectation `e` (0 where o ≤ e), in float32:
    o·log(o/e) + (t - o)·log((t - o)/(t - e)) = pairs[o] - o·slope - base, with `value` the
    unit's pairs[o] (see `_pairs`; overwritten with the result), slope = log e - log(t - e)
    and base = t·log(t - e) per window."""
    value -= np.multiply(o, slope, dtype=np.float32)   # int × float32 would compute in float64
    value -= base
    value *= o > e
    return value


def _terms(e: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_llr`'s slope and base for window expectations `e` of units with `total` failures."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_e = np.log(np.where(e > 0, e, 1.0))
        log_rest = np.log(np.where(total - e > 0, total - e, 1.0))
    return (log_e - log_rest).astype(np.float32), (total * log_rest).astype(np.float32)


def scan_level(sessions: np.ndarray, failures: np.ndarray, fleet_sessions: np.ndarray,
               fleet_failures: np.ndarray, *, draws: int = DRAWS, level: str = "",
               labels: Sequence[str] | None = None, adjust: bool = True,
               slots: np.ndarray | None = None) -> ScanResult:
    """Scan every unit (row) of one level for its worst window and calibrate it by simulation.

    Parameters
    ----------
    sessions, failures
        Per unit and bucket (U × B) counts.
    fleet_sessions, fleet_failures
        Per bucket counts of the whole fleet (the unit's included), for the hour effects.
    draws
        Simulated histories per unit.
    level, labels
        The level's name and the units' labels (row numbers when None): each unit's
        simulations draw from a random stream of its own seeded by the two (see
        `unit_stream`), so a unit's p-value depends on its counts, the fleet's and its name
        only, not on which other units are scanned with it.
    adjust
        Allow for the fleet's hour effects (False for the fleet itself: its own history only).
    slots
        Each bucket's place in the day (`day_slots`), to allow for a daily cycle: the rest of
        the fleet's for a unit, the fleet's own (from its other days) for the fleet. None:
        no daily cycle.

    Returns
    -------
    ScanResult
    """
    n = np.asarray(sessions, dtype=np.int64)
    x = np.asarray(failures, dtype=np.int64)
    units, buckets = n.shape
    if adjust:
        fleet_n, fleet_x = np.asarray(fleet_sessions), np.asarray(fleet_failures)
        cycle = daily_cycle(fleet_n[None, :] - n, fleet_x[None, :] - x, slots)
        # Hours in which the rest of the fleet spiked are left out of the unit's scan: an
        # outage elsewhere (or everywhere) is not this unit's, and weighting them up would
        # lower what the unit should fail in every other hour.
        spiked = spikes(n, x, fleet_n, fleet_x, cycle)
        n, x = np.where(spiked, 0, n), np.where(spiked, 0, x)
        effect = hour_effects(n, x, fleet_n, fleet_x, cycle)
    else:
        cycle = daily_cycle(n, x, slots)
        effect = np.ones(n.shape) if cycle is None else cycle
    weight = n * effect                                     # expected ∝ sessions × hour effect
    total = x.sum(axis=1)
    weight_total = weight.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(weight_total[:, None] > 0, weight / weight_total[:, None], 0.0)
    first, length = window_grid(buckets)
    last = first + length - 1
    cum_share = np.concatenate([np.zeros((units, 1)), np.cumsum(share, axis=1)], axis=1)
    window_share = np.clip(cum_share[:, last + 1] - cum_share[:, first], 0.0, 1.0)   # U × W
    e = window_share * total[:, None]
    slope, base = _terms(e, total[:, None])
    e = e.astype(np.float32)
    pairs, offset = _pairs(total)
    cum_x = np.concatenate([np.zeros((units, 1), np.int64), np.cumsum(x, axis=1)], axis=1)
    o = (cum_x[:, last + 1] - cum_x[:, first]).astype(np.int32)
    llr = _llr(o, pairs[o + offset[:, None]], slope, base, e)
    best = np.argmax(llr, axis=1) if units else np.zeros(0, np.int64)
    rows = np.arange(units)
    best_llr = llr[rows, best] if units else np.zeros(0)
    found = best_llr > 0
    win_first = np.where(found, first[best], -1)
    win_last = np.where(found, last[best], -1)
    cum_share_x = (cum_share, cum_x)
    for row in np.flatnonzero(found):
        lo, hi = _refine(cum_share_x, int(row), int(total[row]), int(first[best[row]]),
                         int(length[best[row]]), buckets, float(weight_total[row]))
        served = np.flatnonzero(n[row, lo:hi + 1] > 0)   # no hours the unit did not serve
        if len(served):
            lo, hi = lo + int(served[0]), lo + int(served[-1])
        win_first[row], win_last[row] = lo, hi
    observed = np.where(found, cum_x[rows, np.maximum(win_last, 0) + 1] - cum_x[rows, np.maximum(win_first, 0)], 0)
    cum_n = np.concatenate([np.zeros((units, 1), np.int64), np.cumsum(n, axis=1)], axis=1)
    in_sessions = np.where(found, cum_n[rows, win_last + 1] - cum_n[rows, win_first], 0)
    # What the rate outside the window predicts inside it (hour effects allowed for).
    cum_w = np.concatenate([np.zeros((units, 1)), np.cumsum(weight, axis=1)], axis=1)
    w_in = np.where(found, cum_w[rows, win_last + 1] - cum_w[rows, win_first], 0.0)
    w_out = weight_total - w_in
    with np.errstate(divide="ignore", invalid="ignore"):
        outside_rate = np.where(w_out > 0, (total - observed) / w_out, np.nan)
    expected = np.where(found, w_in * outside_rate, 0.0)
    p = np.ones(units)
    candidates = np.flatnonzero(found & (total >= 2))
    if len(candidates) and draws > 0:
        colors = np.rint(weight).astype(np.int64)
        short = colors.sum(axis=1) < total
        colors[short] = n[short]
        names = [str(i) for i in range(units)] if labels is None else [str(u) for u in labels]
        streams = [unit_stream(level, names[i]) for i in candidates]
        tables = [pairs[offset[i]:offset[i] + total[i] + 1] for i in candidates]
        p[candidates] = _simulated_p(colors[candidates], total[candidates], best_llr[candidates],
                                     first, last, tables, slope[candidates], base[candidates],
                                     e[candidates], draws, streams)
    return ScanResult(best_llr, win_first, win_last, observed, expected, in_sessions, p)


def _refine(cums: tuple[np.ndarray, np.ndarray], row: int, total: int, first: int, length: int,
            buckets: int, sessions: float) -> tuple[int, int]:
    """Where exactly the window lies: every window inside the grid's best one widened by about
    half its length on either side (at most 1.5 times as long, as short as one bucket), scored by Kulldorff's
    Bernoulli likelihood ratio on the unit's `sessions` (weighted by the hour effects). Unlike
    the Poisson ratio, it counts the healthy sessions too, so a window does not stretch over
    hours that failed a little above the unit's usual rate but far below the outage's.
    Only the reported window moves; the p-value stays the grid's, as the simulations saw it."""
    cum_share, cum_x = cums
    high = min(buckets, int(np.ceil(length * 1.5)) + 1)
    reach = max(1, length // 2) + (high - length)
    lo, hi = max(0, first - reach), min(buckets, first + length + reach)
    starts = np.arange(lo, hi)
    lengths = np.arange(1, high + 1)
    f = np.repeat(starts, len(lengths))
    ln = np.tile(lengths, len(starts))
    ok = f + ln <= hi
    f, ln = f[ok], ln[ok]
    o = (cum_x[row, f + ln] - cum_x[row, f]).astype(float)
    inside = np.maximum(np.clip(cum_share[row, f + ln] - cum_share[row, f], 0.0, 1.0) * sessions, o)
    outside = np.maximum(sessions - inside, total - o)
    llr = _binomial_ll(o, inside) + _binomial_ll(total - o, outside)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where(o / np.where(inside > 0, inside, 1.0) > (total - o) / np.where(outside > 0, outside, 1.0),
                       llr, -np.inf)
    k = int(np.argmax(llr))
    return int(f[k]), int(f[k] + ln[k] - 1)


def _binomial_ll(k: np.ndarray, m: np.ndarray) -> np.ndarray:
    """k·log(k/m) + (m - k)·log(1 - k/m): the log-likelihood of k failures in m sessions at
    their own rate (0·log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(m > 0, k / np.where(m > 0, m, 1.0), 0.0)
        hit = np.where(k > 0, k * np.log(np.where(rate > 0, rate, 1.0)), 0.0)
        miss = np.where(m - k > 0, (m - k) * np.log(np.where(rate < 1, 1 - rate, 1.0)), 0.0)
    return np.asarray(hit + miss)


def unit_stream(level: str, label: str) -> np.random.Generator:
    """The random stream of one unit's simulations, seeded by its level's name and its label
    (a hash of each): the same unit draws the same histories whatever else is scanned."""
    keys = [int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            for text in (level, label)]
    return np.random.default_rng(keys)


def _method(colors: np.ndarray, total: int, draws: int) -> Literal["count", "marginals"]:
    """numpy's cheaper exact way to draw `draws` histories of `total` failures among `colors`.

    "count" deals the failures one by one out of an array of every session: it costs about
    15 ns per failure and draw (cache misses in that array) and 0.4 ns per session to build
    the array once. "marginals" draws one hypergeometric variate per bucket and draw, about
    120 ns each, whatever the failures. So "count" wins while draws·t + sessions/40 <
    8·draws·buckets: below about 8 failures per bucket (5,400 at 672 hourly buckets; measured
    at 10,000 to 1,000,000 sessions, the crossover lay between 5,500 and 8,500 failures at 160
    draws), fewer for a large unit at 9 draws, where building its array counts."""
    sessions = int(colors.sum())
    return "count" if draws * total + sessions // 40 < 8 * draws * len(colors) else "marginals"


def _maxima(colors: np.ndarray, total: int, draws: int, stream: np.random.Generator,
            first: np.ndarray, last: np.ndarray, table: np.ndarray, slope: np.ndarray,
            base: np.ndarray, e: np.ndarray) -> np.ndarray:
    """One unit's best-window statistic on `draws` simulated histories: its failures dealt at
    random among its sessions, without replacement (each session fails at most once: a
    multivariate hypergeometric draw), bucket b holding `colors[b]` sessions (its sessions
    times its hour effect, rounded); `table` is the unit's part of `_pairs`."""
    buckets = len(colors)
    cum = np.zeros((draws, buckets + 1), dtype=np.int32)
    if total:
        served = np.flatnonzero(colors)   # a bucket without sessions gets no failures
        dealt = stream.multivariate_hypergeometric(colors[served], total, size=draws,
                                                   method=_method(colors[served], total, draws))
        if len(served) < buckets:
            dealt, part = np.zeros((draws, buckets), dtype=dealt.dtype), dealt
            dealt[:, served] = part
        np.cumsum(dealt, axis=1, out=cum[:, 1:])
    maxima = np.zeros(draws)
    # A block of draws at a time: arrays of about BLOCK values stay in the processor's cache
    # (measured at 672 buckets: half the time of all 160 draws at once).
    step = max(1, BLOCK // max(1, len(first)))
    for lo in range(0, draws, step):
        block = cum[lo:lo + step]
        o = block[:, last + 1]
        o -= block[:, first]
        maxima[lo:lo + step] = _llr(o, table[o], slope, base, e).max(axis=1)
    return maxima


def _simulated_maxima(colors: np.ndarray, total: np.ndarray, first: np.ndarray, last: np.ndarray,
                      tables: Sequence[np.ndarray], slope: np.ndarray, base: np.ndarray,
                      e: np.ndarray, draws: int, streams: Sequence[np.random.Generator]
                      ) -> np.ndarray:
    """Each unit's best-window statistic on `draws` simulated histories (units × draws)."""
    maxima = np.zeros((len(total), draws))
    for row in range(len(total)):
        maxima[row] = _maxima(colors[row], int(total[row]), draws, streams[row], first, last,
                              tables[row], slope[row], base[row], e[row])
    return maxima


def _simulated_p(colors: np.ndarray, total: np.ndarray, observed_llr: np.ndarray,
                 first: np.ndarray, last: np.ndarray, tables: Sequence[np.ndarray],
                 slope: np.ndarray, base: np.ndarray, e: np.ndarray, draws: int,
                 streams: Sequence[np.random.Generator]) -> np.ndarray:
    """Monte Carlo p-values of the units' best-window statistics, in stages: a unit that
    `STOP_COUNT` simulated histories already beat after 9 or 39 draws stops there with the
    p-value of that many draws ((k + 1) / (n + 1), valid for any fixed n, and at least 0.15, so
    stopping never makes a small p-value); the rest go on to `draws` and the Gumbel tail.
    Unit i draws from `streams[i]` only."""
    units = len(total)
    p = np.ones(units)
    active = np.arange(units)
    maxima = np.zeros((units, 0))
    done = 0
    for stage in sorted({min(9, draws), min(39, draws), draws}):
        if not len(active):
            break
        more = _simulated_maxima(colors[active], total[active], first, last,
                                 _pick(tables, active), slope[active], base[active],
                                 e[active], stage - done, _pick(streams, active))
        grown = np.zeros((units, stage))
        grown[:, :done] = maxima
        grown[active, done:] = more
        maxima, done = grown, stage
        higher = (maxima[active] >= observed_llr[active, None] - 1e-9).sum(axis=1)
        if stage < draws:
            stop = higher >= STOP_COUNT
            p[active[stop]] = _randomized(observed_llr[active[stop]], maxima[active[stop]],
                                          _pick(streams, active[stop]))
            # Far beyond every simulation so far: the Gumbel tail of those few already says
            # "well below any threshold" (a factor of two either way changes no decision).
            tail = calibrated_p(observed_llr[active], maxima[active])
            sure = ~stop & (higher == 0) & (tail < CERTAIN) & (stage >= 39)
            p[active[sure]] = tail[sure]
            active = active[~(stop | sure)]
        else:
            p[active] = calibrated_p(observed_llr[active], maxima[active],
                                     _pick(streams, active))
    return p


_T = TypeVar("_T")


def _pick(items: Sequence[_T], rows: np.ndarray) -> list[_T]:
    return [items[i] for i in rows.tolist()]


def _randomized(observed: np.ndarray, maxima: np.ndarray,
                streams: Sequence[np.random.Generator]) -> np.ndarray:
    """The Monte Carlo p-value with ties (and the observation's own place among the draws)
    broken at random: (above + U·(tied + 1)) / (draws + 1), U uniform on (0, 1) from each
    row's own stream. Exactly uniform under the null even for a statistic with ties (a unit
    with few failures), where (k + 1) / (draws + 1) is too large on average."""
    above = (maxima > observed[:, None] + 1e-9).sum(axis=1)
    tied = (np.abs(maxima - observed[:, None]) <= 1e-9).sum(axis=1)
    u = np.array([stream.random() for stream in streams])
    return np.asarray((above + u * (tied + 1)) / (maxima.shape[1] + 1))


def calibrated_p(observed: np.ndarray, maxima: np.ndarray,
                 streams: Sequence[np.random.Generator] | None = None) -> np.ndarray:
    """P-values of `observed` statistics (one per row) against simulated ones (rows × draws):
    the share of simulations as high, counting the observation itself ((k + 1) / (draws + 1),
    ties broken at random when each row's random `streams` are given, see `_randomized`); when fewer than
    `TAIL_COUNT` are as high, the Gumbel tail exp(-(x - location)) with the location matched
    at the simulations' 90th percentile."""
    observed = np.asarray(observed, dtype=float)
    higher = (maxima >= observed[:, None] - 1e-9).sum(axis=1)
    p = _randomized(observed, maxima, streams) if streams is not None else (higher + 1) / (maxima.shape[1] + 1)
    location = np.quantile(maxima, 0.9, axis=1) + _EULER_90
    tail = -np.expm1(-np.exp(-(observed - location)))
    return np.where(higher < TAIL_COUNT, np.minimum(tail, 1.0), p)
