"""Diagnosis: which hosts, rollouts or regions fail more than they should, and when.

DataFrame in, DataFrame out; plots and widgets draw what these functions find.
Reading the numbers, for someone who is not a statistician:

- **rate**: the share of *ended* sessions that failed (active sessions have no outcome yet and
  are left out). Which exit statuses count as failures is `failures` (see `is_failure`).
- **Wilson interval** (`ci_low`, `ci_high`): the range of true failure rates that is consistent
  with the sessions seen, at 95 % confidence. 1 failure in 2 sessions gives 1 %–99 %: a rate on
  a handful of sessions says little, and the interval shows it.
- **baseline**: what the *rest of the fleet* failed at during the same hours the unit was
  serving. Comparing at the same time matters: a bad hour for everyone makes every pod that was
  busy in it look bad against a whole-week average, but not against its neighbours that hour.
- **expected / lift**: failures the unit would have had at the baseline rate, and rate ÷
  baseline (2.0 means twice as many failures as its peers at the same time).
- **p_value**: if the unit were no worse than its peers, the chance of seeing at least this many
  failures anyway (an exact test, stratified by time bucket). Small means "hard to explain by
  luck". On its own it is misleading when dozens of units are checked, because some will be
  unlucky; hence
- **q_value**: the p-value corrected for how many units were tested, across every unit at every
  level. Flagging everything with q < 0.05 means that, on average, at most 5 % of the flagged
  units are false alarms. Units are nested (a pod's sessions are also its replicaset's, its
  version's and its region's), so their tests are not independent; the correction is the
  Benjamini–Yekutieli form of Benjamini–Hochberg, which holds under any dependence. Measured on
  quiet simulated fleets (no incident), plain Benjamini–Hochberg raised some false alarm in 6.7 %
  of fleets, this form in under 1 %, while finding the planted incidents just as often.
- **window**: the stretch of time where the unit's failures most exceed what its peers predict
  (the contiguous run of time buckets with the largest summed excess) — usually the incident.

Minimum volume: a unit is only tested with at least `min_sessions` ended sessions (default 20)
and only flagged with at least `min_failures` failures (default 3), so one failure in two
sessions can never become a headline.

Levels are reconciled so that one cause gives one headline (`explained_by` says who carries it):
a unit whose excess disappears once its worst significant sub-unit is removed (a replicaset
with one broken pod) is *explained by* that sub-unit; a unit that does not stand out from its
own siblings (a pod tested against the rest of its replicaset) is *explained by* its parent,
when the parent is itself significant. `flagged` marks the remaining headlines.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from scipy import stats

from ._stats import q_values, max_llr_window, monte_carlo_chi2, stratified_excess, wilson_interval

__all__ = [
    "DEFAULT_FAILURES",
    "DEFAULT_LEVELS",
    "MIN_FAILURES",
    "MIN_SESSIONS",
    "exit_status_shift",
    "failure_rates",
    "is_failure",
    "rank_suspects",
    "summarize_suspects",
]

FailureSpec = Collection[str] | Callable[[str], bool] | None

DEFAULT_LEVELS = ("engine_pod", "engine_replicaset", "engine_version", "engine_region")
MIN_SESSIONS = 20
MIN_FAILURES = 3
# Time buckets are merged into strata expected to hold this many failures fleet-wide.
STRATUM_FAILURES = 100
# A unit counts as inside a coarser unit when at least this share of its sessions are there.
NEST_SHARE = 0.95
_LABELS = {"engine_pod": "pod", "engine_replicaset": "replicaset",
           "engine_version": "version", "engine_region": "region"}


def _default_failure(status: str) -> bool:
    """`ERROR`, or any status whose name contains ERROR or FAIL, ignoring case."""
    upper = status.upper()
    return "ERROR" in upper or "FAIL" in upper


#: The default failure rule: ERROR and any status containing ERROR or FAIL (ENGINE_ERROR,
#: FAILED_TO_START, ...). Passing it as `failures=` is the same as passing None.
DEFAULT_FAILURES: Callable[[str], bool] = _default_failure


def _failure_rule(failures: FailureSpec) -> Callable[[Any], bool]:
    if failures is None:
        return lambda status: _default_failure(str(status))
    if callable(failures):
        return lambda status: bool(failures(status))
    if isinstance(failures, str):
        return lambda status: status == failures
    if isinstance(failures, Collection):
        chosen = set(failures)
        return lambda status: status in chosen or str(status) in chosen
    raise TypeError(
        f"failures={failures!r} is not usable: pass None (the default rule), a collection of "
        "exit statuses such as {'ERROR', 'ENGINE_ERROR'}, or a function status -> bool"
    )


def is_failure(statuses: Sequence[Any] | pd.Series | pd.Index, failures: FailureSpec = None
               ) -> np.ndarray:
    """Boolean array: which exit statuses count as failures. Missing statuses never do.

    `failures` is None (the default rule, `DEFAULT_FAILURES`), a collection of exact statuses,
    or a function called once per distinct status.
    """
    rule = _failure_rule(failures)
    codes, uniques = pd.factorize(pd.Series(statuses, dtype=object) if not isinstance(
        statuses, (pd.Series, pd.Index)) else statuses, use_na_sentinel=True)
    flags = np.array([rule(u) for u in uniques], dtype=bool)
    out = np.zeros(len(codes), dtype=bool)
    known = codes >= 0
    out[known] = flags[codes[known]]
    return out


# --- input checks ---------------------------------------------------------------------------

def _check_frame(df: object, needs: Sequence[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a sessions DataFrame (from sessions_frame), got {type(df).__name__}")
    missing = [c for c in needs if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns)) or "no columns at all"
        raise ValueError(f"the sessions frame lacks column(s) {missing} (it has: {have}); "
                         "build it with sessions_frame(records)")
    return df


def _check_columns(df: pd.DataFrame, names: str | Sequence[str], arg: str) -> list[str]:
    cols = [names] if isinstance(names, str) else list(names)
    if not cols:
        raise ValueError(f"{arg} is empty: name at least one column, e.g. {arg}='engine_pod'")
    unknown = [c for c in cols if c not in df.columns]
    if unknown:
        raise ValueError(f"{arg} names unknown column(s) {unknown}; valid columns: "
                         f"{', '.join(map(str, df.columns))}")
    if len(set(cols)) != len(cols):
        raise ValueError(f"{arg}={cols!r} repeats a column")
    return cols


def _check_freq(freq: str | pd.Timedelta) -> pd.Timedelta:
    try:
        offset = to_offset(freq)
        step = pd.Timedelta(offset)
    except (ValueError, TypeError):
        raise ValueError(f"freq={freq!r} is not a fixed-length pandas offset; use e.g. "
                         "'15min', '1h', '6h' or '1D'") from None
    if step <= pd.Timedelta(0):
        raise ValueError(f"freq={freq!r} must be a positive duration such as '1h'")
    return step


def _check_count(value: object, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{arg}={value!r} must be a whole number ≥ 0")
    return int(value)


def _ended(df: pd.DataFrame) -> np.ndarray:
    """Sessions with an outcome: not active (by is_active, else by end_time, else by status)."""
    if "is_active" in df.columns:
        return ~df["is_active"].fillna(False).to_numpy(dtype=bool)
    if "end_time" in df.columns:
        return df["end_time"].notna().to_numpy()
    return df["exit_status"].notna().to_numpy()


def _label(column: str) -> str:
    return _LABELS.get(column, column)


# --- failure_rates --------------------------------------------------------------------------

def failure_rates(df: pd.DataFrame, by: str | Sequence[str] = "engine_pod",
                  failures: FailureSpec = None) -> pd.DataFrame:
    """Failure rate per group of `by` (one column or several), with a 95 % Wilson interval.

    Columns: sessions (ended), failures, rate, ci_low, ci_high, active (left out of the rate).
    Indexed by the group values (missing values form their own group), in group order.
    """
    _check_frame(df, ["exit_status"])
    cols = _check_columns(df, by, "by")
    ended = _ended(df)
    counts = pd.DataFrame({
        "sessions": ended.astype(np.int64),
        "failures": (is_failure(df["exit_status"], failures) & ended).astype(np.int64),
        "active": (~ended).astype(np.int64),
    }, index=df.index)
    keys = [df[c] for c in cols]
    grouped = counts.groupby(keys if len(keys) > 1 else keys[0], observed=True, dropna=False).sum()
    sessions = grouped["sessions"].to_numpy()
    fails = grouped["failures"].to_numpy()
    low, high = wilson_interval(fails, sessions)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(sessions > 0, fails / np.maximum(sessions, 1), np.nan)
    return pd.DataFrame({
        "sessions": sessions.astype(np.int64), "failures": fails.astype(np.int64),
        "rate": rate.astype(float), "ci_low": low, "ci_high": high,
        "active": grouped["active"].to_numpy().astype(np.int64),
    }, index=grouped.index)


# --- rank_suspects --------------------------------------------------------------------------

_SUSPECT_COLUMNS = {
    "level": "string", "unit": "string", "sessions": "int64", "failures": "int64",
    "rate": "float64", "baseline": "float64", "expected": "float64", "lift": "float64",
    "p_value": "float64", "q_value": "float64",
    "window_start": "datetime64[ns, UTC]", "window_end": "datetime64[ns, UTC]",
    "window_sessions": "int64", "window_failures": "int64", "window_rate": "float64",
    "window_baseline": "float64", "region": "string", "parent": "string",
    "p_within": "float64", "q_within": "float64", "explained_by": "string",
    "flagged": "bool", "finding": "string",
}


@dataclass
class _Sessions:
    """Ended sessions with a start time, reduced to arrays: time bucket, failed, unit codes.

    `excluded` marks sessions of units already found to be bad; they are left out of the
    reference fleet of every other unit (see `rank_suspects`).
    """

    bucket: np.ndarray
    stratum: np.ndarray
    fail: np.ndarray
    origin: pd.Timestamp
    step: pd.Timedelta
    buckets: int
    codes: dict[str, np.ndarray]
    names: dict[str, np.ndarray]
    excluded: np.ndarray

    def cells(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per stratum (sorted) of the sessions in `mask`: stratum, sessions, failures."""
        t, inv = np.unique(self.stratum[mask], return_inverse=True)
        return t, np.bincount(inv, minlength=len(t)), np.bincount(
            inv, weights=self.fail[mask], minlength=len(t)).astype(np.int64)

    def start_of(self, bucket: int) -> pd.Timestamp:
        return self.origin + bucket * self.step

    def unit(self, level: str, code: int) -> np.ndarray:
        return self.codes[level] == code

    def reference(self, unit: np.ndarray) -> np.ndarray:
        """The unit's reference fleet: everything except other units already found bad."""
        return ~(self.excluded & ~unit)


def _strata(bucket: np.ndarray, fail: np.ndarray, stratum_failures: int) -> np.ndarray:
    """Stratum of each session: consecutive time buckets merged until a stratum holds enough
    sessions to expect `stratum_failures` failures at the fleet's overall rate."""
    if not len(bucket) or not stratum_failures or not fail.any():
        return bucket.copy()
    target = int(np.ceil(stratum_failures * len(fail) / fail.sum()))
    per_bucket = np.bincount(bucket)
    before = np.cumsum(per_bucket) - per_bucket
    sid = before // target
    last = sid.max()
    if last and per_bucket[sid == last].sum() < target:
        sid[sid == last] = last - 1
    return sid[bucket]


def _sessions(df: pd.DataFrame, levels: list[str], failures: FailureSpec,
              step: pd.Timedelta, stratum_failures: int) -> _Sessions:
    start = pd.to_datetime(df["start_time"], utc=True, errors="coerce")
    keep = _ended(df) & start.notna().to_numpy()
    start = start[keep]
    fail = is_failure(df["exit_status"], failures)[keep]
    origin = start.min().floor(step) if len(start) else pd.Timestamp(0, tz="UTC")
    bucket = ((start - origin) // step).to_numpy(dtype=np.int64) if len(start) else np.zeros(0, np.int64)
    codes, names = {}, {}
    for col in levels:
        c, u = pd.factorize(df[col][keep], use_na_sentinel=True)
        codes[col], names[col] = c.astype(np.int64), np.array([str(v) for v in u], dtype=object)
    return _Sessions(bucket, _strata(bucket, fail, stratum_failures), fail, origin, step, int(bucket.max()) + 1 if len(bucket) else 0,
                     codes, names, np.zeros(len(bucket), dtype=bool))


def _modal(child: np.ndarray, parent: np.ndarray, n_child: int, n_parent: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """For each child unit, the parent unit holding most of its sessions and that share."""
    modal, share = np.full(n_child, -1), np.zeros(n_child)
    ok = (child >= 0) & (parent >= 0)
    if not ok.any() or not n_parent:
        return modal, share
    key, counts = np.unique(child[ok] * n_parent + parent[ok], return_counts=True)
    c, p = key // n_parent, key % n_parent
    order = np.lexsort((-counts, c))
    first = order[np.r_[True, c[order][1:] != c[order][:-1]]]
    totals = np.bincount(child[child >= 0], minlength=n_child)
    modal[c[first]] = p[first]
    share[c[first]] = counts[first] / totals[c[first]]
    return modal, share


def _masked_test(s: _Sessions, unit: np.ndarray, reference: np.ndarray) -> float:
    """Exact p-value that the `unit` sessions failed more than their `reference` (which holds
    them) at the same time buckets; 1.0 when there is nothing to compare."""
    t_u, n_u, x_u = s.cells(unit)
    if not len(t_u):
        return 1.0
    t_r, n_r, x_r = s.cells(reference)
    where = np.searchsorted(t_r, t_u)
    return float(stratified_excess(n_u, x_u, n_r[where], x_r[where],
                                   np.zeros(len(t_u), np.int64), 1)[0][0])


def _level_table(s: _Sessions, col: str, min_sessions: int) -> pd.DataFrame:
    """Every unit of one level with enough sessions, against its reference fleet, same time."""
    S = int(s.stratum.max()) + 1 if len(s.stratum) else 1
    N = np.bincount(s.stratum, minlength=S)
    X = np.bincount(s.stratum, weights=s.fail, minlength=S).astype(np.int64)
    En = np.bincount(s.stratum[s.excluded], minlength=S)
    Ex = np.bincount(s.stratum[s.excluded], weights=s.fail[s.excluded], minlength=S).astype(np.int64)
    codes, names = s.codes[col], s.names[col]
    U = len(names)
    ok = codes >= 0
    # Stratum cells (one unit in one stratum) carry the test.
    cellkey = codes * S + s.stratum
    key, inv = np.unique(cellkey[ok], return_inverse=True)
    cu, cs = key // S, key % S
    n = np.bincount(inv, minlength=len(key))
    x = np.bincount(inv, weights=s.fail[ok], minlength=len(key)).astype(np.int64)
    # The unit's own excluded sessions stay in its reference: only *other* bad units leave it.
    mine = ok & s.excluded
    pos = np.searchsorted(key, cellkey[mine])
    en = np.bincount(pos, minlength=len(key))
    ex = np.bincount(pos, weights=s.fail[mine], minlength=len(key)).astype(np.int64)
    M, K = N[cs] - En[cs] + en, X[cs] - Ex[cs] + ex
    sessions = np.bincount(cu, weights=n, minlength=U).astype(np.int64)
    fails = np.bincount(cu, weights=x, minlength=U).astype(np.int64)
    tested = sessions >= min_sessions
    in_test = tested[cu]
    p, z = stratified_excess(n[in_test], x[in_test], M[in_test], K[in_test], cu[in_test], U)
    rest = M - n
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(rest > 0, (K - x) / rest, np.nan)
    compared = np.bincount(cu, weights=np.where(rest > 0, n, 0), minlength=U)
    with np.errstate(divide="ignore", invalid="ignore"):
        baseline = np.bincount(cu, weights=np.nan_to_num(n * r), minlength=U) / compared
    # Time-bucket cells locate the window; each expects its stratum's rest-of-fleet rate
    # (shrunk by one pseudo-session towards the fleet rate so it is never zero).
    prior = X.sum() / max(N.sum(), 1) or 1e-3
    smooth = (K - x + prior) / (rest + 1.0)
    bkey = codes * max(s.buckets, 1) + s.bucket
    bk, binv = np.unique(bkey[ok], return_inverse=True)
    bu, bt = bk // max(s.buckets, 1), bk % max(s.buckets, 1)
    bn = np.bincount(binv, minlength=len(bk))
    bx = np.bincount(binv, weights=s.fail[ok], minlength=len(bk)).astype(np.int64)
    first = np.zeros(len(bk), dtype=np.int64)
    first[binv] = np.flatnonzero(ok)
    bcell = np.searchsorted(key, bu * S + s.stratum[first])
    rows = []
    bounds = np.searchsorted(bu, np.arange(U + 1))
    for u in np.flatnonzero(tested):
        sl = slice(bounds[u], bounds[u + 1])
        i, j = max_llr_window(bx[sl], bn[sl] * smooth[bcell[sl]])
        ws = wf = 0
        wb = np.nan
        wstart = wend = pd.NaT
        if i >= 0:
            inside = slice(bounds[u] + i, bounds[u] + j + 1)
            ws, wf = int(bn[inside].sum()), int(bx[inside].sum())
            wr = r[bcell[inside]]
            wc = np.where(np.isnan(wr), 0, bn[inside])
            wb = float((wc * np.nan_to_num(wr)).sum() / wc.sum()) if wc.sum() else np.nan
            wstart, wend = s.start_of(int(bt[inside][0])), s.start_of(int(bt[inside][-1]) + 1)
        rows.append({
            "level": col, "unit": names[u], "code": u, "sessions": sessions[u],
            "failures": fails[u], "baseline": baseline[u], "p_value": p[u], "z": z[u],
            "window_start": wstart, "window_end": wend, "window_sessions": ws,
            "window_failures": wf, "window_baseline": wb,
        })
    return pd.DataFrame(rows)


def rank_suspects(df: pd.DataFrame, levels: str | Sequence[str] = DEFAULT_LEVELS,
                  failures: FailureSpec = None, freq: str = "1h",
                  min_sessions: int = MIN_SESSIONS, min_failures: int = MIN_FAILURES,
                  alpha: float = 0.05, stratum_failures: int = STRATUM_FAILURES) -> pd.DataFrame:
    """Units (pods, replicasets, versions, regions, or any columns) ranked by failure excess.

    Each unit is compared with the rest of the fleet over the same time buckets of `freq`
    (see the module docstring for what each column means). `levels` go from finest to
    coarsest; `alpha` is the q-value below which a unit counts as significant.

    Two incidents at the same time would inflate each other's baseline, so the comparison is
    repeated (at most four passes) with the sessions of the headlines found so far left out
    of every *other* unit's reference fleet, until the headlines stop changing.

    Headlines (`flagged`) come first, largest lift first; then significant units explained by
    another, then the rest, each by p-value. Units under `min_sessions` ended sessions are not listed;
    `df.attrs` records how many were skipped and the settings used.
    """
    _check_frame(df, ["exit_status", "start_time"])
    cols = _check_columns(df, levels, "levels")
    step = _check_freq(freq)
    min_sessions = _check_count(min_sessions, "min_sessions")
    min_failures = _check_count(min_failures, "min_failures")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be a number between 0 and 1, e.g. 0.05")
    _failure_rule(failures)
    stratum_failures = _check_count(stratum_failures, "stratum_failures")
    s = _sessions(df, cols, failures, step, stratum_failures)
    attrs: dict[str, Any] = {"freq": str(freq), "alpha": alpha, "min_sessions": min_sessions,
                             "stratum_failures": stratum_failures,
                             "strata": int(len(np.unique(s.stratum))),
                             "min_failures": min_failures, "sessions": int(len(s.bucket))}
    headlines: frozenset[tuple[str, int]] = frozenset()
    for passes in range(1, 5):
        out = _one_pass(s, cols, min_sessions, min_failures, alpha)
        if out.empty:
            break
        found = frozenset(zip(out.loc[out["flagged"], "level"], out.loc[out["flagged"], "code"]))
        if found == headlines:
            break
        headlines = found
        s.excluded = np.zeros(len(s.bucket), dtype=bool)
        for level, code in headlines:
            s.excluded |= s.unit(level, code)
    attrs.update(passes=passes, untested_units=int(
        sum(len(s.names[c]) for c in cols) - len(out)))
    if out.empty:
        out = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _SUSPECT_COLUMNS.items()})
    else:
        out["finding"] = [_finding(row) for row in out.itertuples(index=False)]
        # Headlines by how far they exceed their peers (lift), everything else by evidence.
        out["tier"] = np.where(out["flagged"], 0, np.where(out["significant"], 1, 2))
        out["severity"] = np.where(out["flagged"], -out["lift"].fillna(0.0), 0.0)
        out = out.sort_values(["tier", "severity", "p_value", "z"],
                              ascending=[True, True, True, False], kind="stable")
        for column in ("window_start", "window_end"):   # all-NaT columns arrive without a zone
            out[column] = pd.to_datetime(out[column], utc=True)
        out = out[list(_SUSPECT_COLUMNS)].astype(_SUSPECT_COLUMNS).reset_index(drop=True)
    out.attrs.update(attrs)
    return out


def _one_pass(s: _Sessions, cols: list[str], min_sessions: int, min_failures: int,
              alpha: float) -> pd.DataFrame:
    """Test, correct and reconcile every unit once against the current reference fleets."""
    tables = [t for t in (_level_table(s, col, min_sessions) for col in cols) if len(t)]
    if not tables:
        return pd.DataFrame()
    out = pd.concat(tables, ignore_index=True)
    out["q_value"] = q_values(out["p_value"].to_numpy(), method="by")
    out["rate"] = out["failures"] / out["sessions"]
    out["expected"] = out["baseline"] * out["sessions"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["lift"] = out["rate"] / out["baseline"]
        out["window_rate"] = np.where(out["window_sessions"] > 0,
                                      out["window_failures"] / out["window_sessions"].clip(lower=1),
                                      np.nan)
    out["significant"] = (out["q_value"] < alpha) & (out["failures"] >= min_failures)
    _reconcile(out, s, cols, min_sessions, alpha)
    out["flagged"] = out["significant"] & out["explained_by"].isna()
    return out


def _reconcile(out: pd.DataFrame, s: _Sessions, cols: list[str], min_sessions: int,
               alpha: float) -> None:
    """Fill region, parent, p_within/q_within and explained_by (see the module docstring).

    Order of decisions: (1) a significant unit is explained by a significant sub-unit when,
    without that sub-unit, the rest of the unit shows no excess (p >= alpha); sub-units are
    tried from the next finer level down, the one with the largest excess first. (2) A
    significant unit that does not stand out from its siblings (q_within >= alpha) is
    explained by its parent when the parent is significant and not explained by this unit.
    (3) Chains are followed to the unit that carries the finding.
    """
    rows = list(out.itertuples(index=False))
    index = {(row.level, row.code): i for i, row in enumerate(rows)}
    nests = {(fine, coarse): _modal(s.codes[fine], s.codes[coarse], len(s.names[fine]),
                                    len(s.names[coarse]))
             for a, fine in enumerate(cols) for coarse in cols[a + 1:]}
    region_col = "engine_region" if "engine_region" in s.codes else None
    region = np.full(len(rows), None, dtype=object)
    parent = np.full(len(rows), None, dtype=object)
    parent_row = np.full(len(rows), -1)
    p_within = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        if region_col == row.level:
            region[i] = row.unit
        elif region_col and (row.level, region_col) in nests:
            m, share = nests[row.level, region_col]
            if m[row.code] >= 0 and share[row.code] >= NEST_SHARE:
                region[i] = s.names[region_col][m[row.code]]
        for coarse in cols[cols.index(row.level) + 1:]:
            m, share = nests[row.level, coarse]
            if m[row.code] < 0 or share[row.code] < NEST_SHARE:
                continue
            holder = s.unit(coarse, m[row.code])
            parent[i] = f"{_label(coarse)} {s.names[coarse][m[row.code]]}"
            parent_row[i] = index.get((coarse, m[row.code]), -1)
            own = holder & s.unit(row.level, row.code)
            if holder.sum() - own.sum() >= min_sessions:
                p_within[i] = _masked_test(s, own, holder)
            break
    q_within = q_values(p_within)
    significant = out["significant"].to_numpy()
    excess = (out["failures"] - out["expected"]).to_numpy()
    explained = np.full(len(rows), -1)
    for i, row in enumerate(rows):
        if not significant[i]:
            continue
        unit = s.unit(row.level, row.code)
        for fine in reversed(cols[: cols.index(row.level)]):
            m, share = nests[fine, row.level]
            inside = np.flatnonzero((m == row.code) & (share >= NEST_SHARE))
            candidates = [index[fine, c] for c in inside if (fine, c) in index]
            candidates = [c for c in candidates if significant[c]]
            if not candidates:
                continue
            worst = max(candidates, key=lambda c: excess[c])
            child = s.unit(fine, rows[worst].code)
            if _masked_test(s, unit & ~child, s.reference(unit) & ~(unit & child)) >= alpha:
                explained[i] = worst
                break
    for i in range(len(rows)):
        j = parent_row[i]
        if (significant[i] and explained[i] < 0 and j >= 0 and significant[j]
                and q_within[i] >= alpha and explained[j] != i):
            explained[i] = j
    labels = np.full(len(rows), None, dtype=object)
    for i in np.flatnonzero(explained >= 0):
        seen, j = {i}, explained[i]
        while explained[j] >= 0 and explained[j] not in seen:
            seen.add(j)
            j = explained[j]
        labels[i] = f"{_label(rows[j].level)} {rows[j].unit}"
    out["region"], out["parent"] = region, parent
    out["p_within"], out["q_within"] = p_within, q_within
    out["explained_by"] = pd.array(labels, dtype="string")


# --- sentences ------------------------------------------------------------------------------

def _pct(value: float) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    share = 100 * float(value)
    if share != 0 and abs(share) < 1:
        return f"{share:.1f} %"
    return f"{share:.0f} %"


def _when(start: pd.Timestamp, end: pd.Timestamp) -> str:
    if start.date() == (end - pd.Timedelta(1, "ns")).date() and end - start < pd.Timedelta(1, "D"):
        return f"between {start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC"
    return f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"


def _finding(row: Any) -> str:
    """One plain-English sentence for a row of rank_suspects."""
    who = f"{_label(row.level)} {row.unit}"
    if row.region is not None and not pd.isna(row.region) and row.level != "engine_region":
        who += f" in region {row.region}"
    q = f"q = {row.q_value:.2g}"
    if row.window_sessions and not pd.isna(row.window_start):
        text = (f"{who} failed {_pct(row.window_rate)} of sessions ({row.window_failures} of "
                f"{row.window_sessions}) {_when(row.window_start, row.window_end)} vs "
                f"{_pct(row.window_baseline)} on the rest of the fleet at the same time "
                f"({_pct(row.rate)} of {row.sessions} sessions overall vs {_pct(row.baseline)}, {q})")
    else:
        text = (f"{who} failed {_pct(row.rate)} of {row.sessions} sessions vs "
                f"{_pct(row.baseline)} on the rest of the fleet at the same time ({q})")
    if row.explained_by is not None and not pd.isna(row.explained_by):
        text += f"; explained by {row.explained_by}"
    return text + "."


def summarize_suspects(ranked: pd.DataFrame, q: float = 0.01, top: int = 3) -> str:
    """The top headline findings of `rank_suspects` as text, or "No unit stands out ..."."""
    _check_frame(ranked, ["flagged", "q_value", "finding", "explained_by", "level", "unit"])
    if not 0 < q <= 1:
        raise ValueError(f"q={q!r} must be between 0 and 1, e.g. 0.01")
    top = _check_count(top, "top")
    heads = ranked[ranked["flagged"] & (ranked["q_value"] < q)].head(top)
    if heads.empty:
        return f"No unit stands out (no unit has q < {q:g} after reconciling levels)."
    noun = "unit stands" if len(heads) == 1 else "units stand"
    lines = [f"{len(heads)} {noun} out (q < {q:g}):"]
    for n, row in enumerate(heads.itertuples(index=False), start=1):
        lines.append(f"{n}. {row.finding}")
        own = f"{_label(row.level)} {row.unit}"
        covered = ranked.loc[ranked["explained_by"] == own]
        if len(covered):
            names = ", ".join(f"{_label(l)} {u}" for l, u in zip(covered["level"], covered["unit"]))
            lines.append(f"   It also accounts for the excess of {names}.")
    return "\n".join(lines)


# --- exit_status_shift ----------------------------------------------------------------------

_SHIFT_COLUMNS = {"before": "int64", "after": "int64", "before_share": "float64",
                  "after_share": "float64", "difference": "float64", "p_value": "float64",
                  "q_value": "float64", "failure": "bool"}


def _split_sides(df: pd.DataFrame, split: Any, before: Any, after: Any
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """Boolean masks (before, after) and a description of the split."""
    if isinstance(split, (pd.Series, np.ndarray, list)) and not isinstance(split, str):
        mask = split.reindex(df.index) if isinstance(split, pd.Series) else np.asarray(split)
        if len(mask) != len(df):
            raise ValueError(f"a boolean split needs one value per session ({len(df)}), got {len(mask)}")
        values = pd.Series(np.asarray(mask, dtype=object))
        if not values.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all():
            raise ValueError("a mask split must hold only True (after) / False (before) values")
        after_mask = (values == True).to_numpy()  # noqa: E712 - element-wise on object values
        before_mask = (values == False).to_numpy()  # noqa: E712
        return before_mask, after_mask, "boolean mask (False = before, True = after)"
    if isinstance(split, str) and split in df.columns:
        if before is None or after is None:
            shown = ", ".join(map(str, pd.Series(df[split]).dropna().unique()[:20]))
            raise ValueError(f"split on column {split!r} needs before= and after= values; "
                             f"it holds: {shown}")
        column = df[split].astype(object)
        sides = []
        for name, chosen in (("before", before), ("after", after)):
            chosen = [chosen] if isinstance(chosen, str) or not isinstance(chosen, Collection) else list(chosen)
            sides.append(column.isin(chosen).to_numpy())
            if not sides[-1].any():
                shown = ", ".join(map(str, column.dropna().unique()[:20]))
                raise ValueError(f"{name}={chosen!r} matches no session in column {split!r}; "
                                 f"it holds: {shown}")
        return sides[0], sides[1], f"{split}: {before!r} → {after!r}"
    if isinstance(split, (str, datetime, pd.Timestamp, np.datetime64)):
        try:
            when = pd.Timestamp(split)
        except (ValueError, TypeError):
            when = pd.NaT
        if pd.isna(when):
            raise ValueError(
                f"split={split!r} is neither a column of the frame nor a timestamp; pass a time "
                "such as '2024-05-03 12:00', a column name with before=/after=, or a boolean mask")
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        _check_frame(df, ["start_time"])
        start = pd.to_datetime(df["start_time"], utc=True, errors="coerce")
        return (start < when).to_numpy(), (start >= when).to_numpy(), f"start_time at {when.isoformat()}"
    raise TypeError(f"split={split!r} must be a timestamp, a column name or a boolean mask")


def exit_status_shift(df: pd.DataFrame, split: Any, before: Any = None, after: Any = None,
                      failures: FailureSpec = None) -> pd.DataFrame:
    """Did the exit-status mix change between two sets of ended sessions, and which statuses moved?

    `split` is a time (sessions starting before vs at/after it; naive times are UTC), a column
    name with `before=`/`after=` values (e.g. "engine_version", before="v5.0.3", after="v5.1.0"),
    or a boolean mask (True = after). One row per status (unknown statuses included): counts,
    shares, difference (after − before share), and a per-status Fisher exact p/q-value.
    `df.attrs` holds the overall test: chi2, dof, p_value and method (chi-square, or a seeded
    Monte Carlo exact test when some expected count is under 5).
    """
    _check_frame(df, ["exit_status"])
    before_mask, after_mask, described = _split_sides(df, split, before, after)
    ended = _ended(df)
    status = df["exit_status"]
    has_status = status.notna().to_numpy()
    attrs: dict[str, Any] = {"split": described,
                             "missing_status": int((ended & ~has_status).sum())}
    use = ended & has_status
    b_status = status[use & before_mask & ~after_mask].astype(object)
    a_status = status[use & after_mask & ~before_mask].astype(object)
    attrs.update(before_sessions=len(b_status), after_sessions=len(a_status))
    if not len(df) or not (use & (before_mask | after_mask)).any():
        attrs.update(chi2=np.nan, dof=0, p_value=np.nan, method="none")
        empty = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _SHIFT_COLUMNS.items()},
                             index=pd.Index([], dtype="string", name="exit_status"))
        empty.attrs.update(attrs)
        return empty
    for name, side in (("before", b_status), ("after", a_status)):
        if not len(side):
            raise ValueError(f"split {described} leaves no ended session {name} it "
                             f"({len(b_status)} before, {len(a_status)} after); choose a split "
                             "inside the data")
    b_counts, a_counts = b_status.value_counts(), a_status.value_counts()
    statuses = list(dict.fromkeys([*b_counts.index, *a_counts.index]))
    nb, na = len(b_status), len(a_status)
    b = np.array([int(b_counts.get(k, 0)) for k in statuses], dtype=np.int64)
    a = np.array([int(a_counts.get(k, 0)) for k in statuses], dtype=np.int64)
    table = np.vstack([b, a])
    if len(statuses) < 2:
        chi2, p, method = 0.0, 1.0, "one status only"
    else:
        chi2, p_asym, dof, expected = stats.chi2_contingency(table, correction=False)
        if expected.min() < 5:
            p, method = monte_carlo_chi2(table), "monte-carlo exact (10000 draws)"
        else:
            p, method = float(p_asym), "chi-square"
    per_status = np.array([stats.fisher_exact([[b[k], nb - b[k]], [a[k], na - a[k]]])[1]
                           for k in range(len(statuses))])
    out = pd.DataFrame({
        "before": b, "after": a, "before_share": b / nb, "after_share": a / na,
        "difference": a / na - b / nb, "p_value": per_status,
        "q_value": q_values(per_status), "failure": is_failure(statuses, failures),
    }, index=pd.Index([str(k) for k in statuses], dtype="string", name="exit_status"))
    out = out.iloc[np.lexsort((-np.abs(out["difference"].to_numpy()), out["p_value"].to_numpy()))]
    attrs.update(chi2=float(chi2), dof=int(len(statuses) - 1), p_value=float(p), method=method)
    out.attrs.update(attrs)
    return out
