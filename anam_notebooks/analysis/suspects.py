"""`rank_suspects`: which units fail more than their peers at the same time, and when.

Each unit is compared with the rest of the fleet in the same time strata (a stratified exact
test), corrected across every unit tested, and reconciled across nested levels; the numbers
are explained in plain words in the `analysis` package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data.checks import check_columns, check_count, check_frame, check_freq, ended_mask
from .failures import FailureSpec, failure_rule, is_failure
from .stats import max_llr_window, q_values, stratified_excess
from .wording import finding_sentence, unit_label

DEFAULT_LEVELS = ("engine_pod", "engine_replicaset", "engine_version", "engine_region")
MIN_SESSIONS = 20
MIN_FAILURES = 3
# Time buckets are merged into strata expected to hold this many failures fleet-wide.
STRATUM_FAILURES = 100
# A unit counts as inside a coarser unit when at least this share of its sessions are there.
NEST_SHARE = 0.95


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
    keep = ended_mask(df) & start.notna().to_numpy()
    start = start[keep]
    fail = is_failure(df["exit_status"], failures)[keep]
    origin = start.min().floor(step) if len(start) else pd.Timestamp(0, tz="UTC")
    bucket = ((start - origin) // step).to_numpy(dtype=np.int64) if len(start) else np.zeros(0, np.int64)
    codes, names = {}, {}
    for col in levels:
        c, u = pd.factorize(df[col][keep], use_na_sentinel=True)
        codes[col], names[col] = c.astype(np.int64), np.array([str(v) for v in u], dtype=object)
    n_buckets = int(bucket.max()) + 1 if len(bucket) else 0
    return _Sessions(bucket, _strata(bucket, fail, stratum_failures), fail, origin, step, n_buckets,
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
    check_frame(df, ["exit_status", "start_time"])
    cols = check_columns(df, levels, "levels")
    step = check_freq(freq)
    min_sessions = check_count(min_sessions, "min_sessions")
    min_failures = check_count(min_failures, "min_failures")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be a number between 0 and 1, e.g. 0.05")
    failure_rule(failures)
    stratum_failures = check_count(stratum_failures, "stratum_failures")
    s = _sessions(df, cols, failures, step, stratum_failures)
    attrs: dict[str, Any] = {"freq": str(freq), "alpha": alpha, "min_sessions": min_sessions,
                             "stratum_failures": stratum_failures,
                             "strata": int(len(np.unique(s.stratum))),
                             "min_failures": min_failures, "sessions": int(len(s.bucket))}
    headlines: frozenset[tuple[str, int]] = frozenset()
    passes = 0
    while passes < 4:  # exclude the headlines found and test again, until they settle
        passes += 1
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
        out["finding"] = [finding_sentence(row) for row in out.itertuples(index=False)]
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
            parent[i] = f"{unit_label(coarse)} {s.names[coarse][m[row.code]]}"
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
        j = int(parent_row[i])
        if (significant[i] and explained[i] < 0 and j >= 0 and significant[j]
                and q_within[i] >= alpha and explained[j] != i):
            explained[i] = j
    labels = np.full(len(rows), None, dtype=object)
    for i in map(int, np.flatnonzero(explained >= 0)):
        seen, j = {i}, int(explained[i])
        while explained[j] >= 0 and explained[j] not in seen:
            seen.add(j)
            j = int(explained[j])
        labels[i] = f"{unit_label(rows[j].level)} {rows[j].unit}"
    out["region"], out["parent"] = region, parent
    out["p_within"], out["q_within"] = p_within, q_within
    out["explained_by"] = pd.array(labels, dtype="string")
