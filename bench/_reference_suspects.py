"""The method `rank_suspects` used before the calibrated scan, kept as the power benchmark's
reference (`bench_diagnosis`); not part of the package.

`rank_suspects`: which units of any attribute fail more than their peers at the same time, and when.

Every unit (a pod, an SDK release, a TTS provider, a persona ...) is compared with the rest of
the fleet in the same time strata (a stratified exact test) and in its worst window (a scan
statistic), corrected across every unit of every attribute, and reconciled so that one cause
gives one headline; the numbers are explained in plain words in the `analysis` package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from anam_notebooks.analysis.coded import _distinct
from anam_notebooks.analysis.failures import FailureSpec, failure_rule, is_failure
from anam_notebooks.analysis.stats import q_values, scan_windows, stratified_excess
from anam_notebooks.analysis.wording import finding_sentence, unit_label
from anam_notebooks.data.checks import check_columns, check_count, check_frame, check_freq, ended_mask

ENGINE_LEVELS = ("engine_pod", "engine_replicaset", "engine_version", "engine_region")
CLIENT_LEVELS = ("sdk_version", "browser", "os", "device_type", "client_label", "api_key_id")
PROVIDER_LEVELS = ("tts_provider", "tts_model", "llm_model")
PERSONA_LEVELS = ("persona_name", "avatar_version", "language_code")
# Every attribute a suspect; when two units hold the same sessions, the earlier one is named.
DEFAULT_LEVELS = ENGINE_LEVELS + CLIENT_LEVELS + PROVIDER_LEVELS + PERSONA_LEVELS
MIN_SESSIONS = 20
MIN_FAILURES = 3
# Time buckets are merged into strata expected to hold this many failures fleet-wide.
STRATUM_FAILURES = 100
# A unit counts as inside a coarser engine unit when at least this share of its sessions are there.
NEST_SHARE = 0.95
# The scan looks at windows of up to this many time buckets (a week of hours); longer
# excesses are the whole-period test's to find.
MAX_WINDOW_BUCKETS = 168
# Two candidate headlines sharing this share of either's failures are not accepted in the same
# pass: the weaker is tested again once the stronger is allowed for.
SHARED_FAILURES = 0.10
MAX_PASSES = 8
MAX_CAUSES = 8

_SUSPECT_COLUMNS = {
    "level": "string", "unit": "string", "family": "string", "sessions": "int64",
    "failures": "int64", "rate": "float64", "baseline": "float64", "expected": "float64",
    "lift": "float64", "p_value": "float64", "p_whole": "float64", "p_window": "float64",
    "q_value": "float64",
    "window_start": "datetime64[ns, UTC]", "window_end": "datetime64[ns, UTC]",
    "window_sessions": "int64", "window_failures": "int64", "window_rate": "float64",
    "window_baseline": "float64", "region": "string", "parent": "string",
    "explained_by": "string", "flagged": "bool", "finding": "string",
}


def family_of(column: str) -> str:
    """Which family an attribute belongs to: "engine", "client", "provider", "persona" or "other"."""
    for name, members in (("engine", ENGINE_LEVELS), ("client", CLIENT_LEVELS + ("user_agent",)),
                          ("provider", PROVIDER_LEVELS),
                          ("persona", PERSONA_LEVELS + ("persona_id", "avatar_key", "persona_type"))):
        if column in members:
            return name
    return "other"


@dataclass
class _Sessions:
    """Ended sessions with a start time, reduced to arrays: time bucket, stratum, failed, unit codes.

    `cause` holds, per session, one bit for each headline found so far that the session belongs
    to; tests compare like with like on those bits (see `rank_suspects`).
    """

    bucket: np.ndarray
    stratum: np.ndarray
    fail: np.ndarray
    origin: pd.Timestamp
    step: pd.Timedelta
    buckets: int
    codes: dict[str, np.ndarray]
    names: dict[str, np.ndarray]
    cause: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    causes: int = 1

    def start_of(self, bucket: int) -> pd.Timestamp:
        return self.origin + bucket * self.step

    def unit(self, level: str, code: int) -> np.ndarray:
        return self.codes[level] == code


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
                     codes, names, np.zeros(len(bucket), dtype=np.int64), 1)


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


def _level_table(s: _Sessions, col: str, min_sessions: int, cause: np.ndarray,
                 only: int | None = None) -> pd.DataFrame:
    """Every unit of one level with enough sessions against the rest of the fleet, same time.

    Comparisons are made within cells of (time, `cause` bits): a session on a known bad unit is
    only compared with sessions on that unit, so a cause already found neither inflates nor
    dilutes anyone else's excess. `only` restricts the table to one unit.
    """
    time_cells = (int(s.stratum.max()) + 1 if len(s.stratum) else 1) * s.causes
    stratum_key = s.stratum * s.causes + cause
    stratum_sessions = np.bincount(stratum_key, minlength=time_cells)
    stratum_failures = np.bincount(stratum_key, weights=s.fail, minlength=time_cells).astype(np.int64)
    codes, names = s.codes[col], s.names[col]
    n_units = len(names)
    mine = codes >= 0 if only is None else codes == only
    # Stratum cells (one unit in one stratum) carry the whole-period test.
    cell_key = codes * time_cells + stratum_key
    keys, cell_of = _distinct(cell_key[mine], n_units * time_cells)
    cell_unit, cell_stratum = keys // time_cells, keys % time_cells
    cell_sessions = np.bincount(cell_of, minlength=len(keys))
    cell_failures = np.bincount(cell_of, weights=s.fail[mine], minlength=len(keys)).astype(np.int64)
    pool_sessions, pool_failures = stratum_sessions[cell_stratum], stratum_failures[cell_stratum]
    unit_sessions = np.bincount(cell_unit, weights=cell_sessions, minlength=n_units).astype(np.int64)
    unit_failures = np.bincount(cell_unit, weights=cell_failures, minlength=n_units).astype(np.int64)
    tested = unit_sessions >= min_sessions
    in_test = tested[cell_unit]
    p_whole, z = stratified_excess(cell_sessions[in_test], cell_failures[in_test],
                                   pool_sessions[in_test], pool_failures[in_test],
                                   cell_unit[in_test], n_units)
    rest_sessions = pool_sessions - cell_sessions
    with np.errstate(divide="ignore", invalid="ignore"):
        rest_rate = np.where(rest_sessions > 0, (pool_failures - cell_failures) / rest_sessions, np.nan)
        compared = np.bincount(cell_unit, weights=np.where(rest_sessions > 0, cell_sessions, 0),
                               minlength=n_units)
        baseline = np.bincount(cell_unit, weights=np.nan_to_num(cell_sessions * rest_rate),
                               minlength=n_units) / compared
    # Time-bucket cells carry the scan: each expects its bucket's share of the bucket's failures.
    bucket_cells = max(s.buckets, 1) * s.causes
    bucket_key = s.bucket * s.causes + cause
    bucket_sessions = np.bincount(bucket_key, minlength=bucket_cells)
    bucket_failures = np.bincount(bucket_key, weights=s.fail, minlength=bucket_cells)
    slot_key = codes * bucket_cells + bucket_key
    slots, slot_of = _distinct(slot_key[mine], n_units * bucket_cells)
    slot_unit, slot_bucket = slots // bucket_cells, slots % bucket_cells
    slot_sessions = np.bincount(slot_of, minlength=len(slots)).astype(float)
    slot_failures = np.bincount(slot_of, weights=s.fail[mine], minlength=len(slots))
    pool_n, pool_x = bucket_sessions[slot_bucket], bucket_failures[slot_bucket]
    # The window is *located* against the rest of the bucket (shrunk by one pseudo-session
    # towards the fleet's rate so it is never zero): a unit that is most of its bucket's
    # traffic would otherwise expect most of its own failures. It is *tested* exactly below.
    fleet_rate = float(s.fail.mean()) if len(s.fail) else 0.0
    slot_expected = slot_sessions * (pool_x - slot_failures + fleet_rate) / (pool_n - slot_sessions + 1.0)
    slot_rest_n = pool_n - slot_sessions
    slot_rest_expected = np.where(slot_rest_n > 0, slot_sessions * (pool_x - slot_failures)
                                  / np.maximum(slot_rest_n, 1), 0.0)
    # One series per unit over the time buckets it served (cause cells of a bucket added up).
    series_key = slot_unit * max(s.buckets, 1) + slot_bucket // s.causes
    steps, step_of = _distinct(series_key, n_units * max(s.buckets, 1))
    step_unit, step_time = steps // max(s.buckets, 1), steps % max(s.buckets, 1)

    def per_step(values: np.ndarray) -> np.ndarray:
        return np.bincount(step_of, weights=values, minlength=len(steps))

    step_sessions, step_failures = per_step(slot_sessions), per_step(slot_failures)
    step_expected = per_step(slot_expected)
    step_compared = per_step(np.where(slot_rest_n > 0, slot_sessions, 0.0))
    step_rest_expected = per_step(slot_rest_expected)
    bounds = np.searchsorted(step_unit, np.arange(n_units + 1))
    units = np.flatnonzero(tested)
    windows = np.full((len(units), 3), -1, dtype=np.int64)   # first step, last step, searched
    for row, u in enumerate(units):
        span = slice(bounds[u], bounds[u + 1])
        first, last, _, searched = scan_windows(step_failures[span], step_sessions[span],
                                                step_expected[span], MAX_WINDOW_BUCKETS)
        windows[row] = (bounds[u] + first, bounds[u] + last, searched) if first >= 0 else (-1, -1, searched)
    # The best window of each unit, tested exactly (its bucket cells, conditional on their
    # margins) and multiplied by the number of windows searched (Bonferroni over windows).
    found = windows[:, 0] >= 0
    slot_row = np.full(len(slots), -1)
    for row in map(int, np.flatnonzero(found)):
        lo, hi = np.searchsorted(step_of, [windows[row, 0], windows[row, 1] + 1])
        slot_row[lo:hi] = row
    inside = slot_row >= 0
    p_inside, _ = stratified_excess(slot_sessions[inside].astype(np.int64),
                                    slot_failures[inside].astype(np.int64),
                                    pool_n[inside].astype(np.int64), pool_x[inside].astype(np.int64),
                                    slot_row[inside], len(units))
    rows = []
    for row, u in enumerate(units):
        window_sessions = window_failures = 0
        window_baseline = np.nan
        window_start = window_end = pd.NaT
        p_window = 1.0
        if found[row]:
            steps_in = slice(windows[row, 0], windows[row, 1] + 1)
            window_sessions = int(step_sessions[steps_in].sum())
            window_failures = int(step_failures[steps_in].sum())
            compared_inside = step_compared[steps_in].sum()
            if compared_inside:
                window_baseline = float(step_rest_expected[steps_in].sum() / compared_inside)
            window_start = s.start_of(int(step_time[steps_in][0]))
            window_end = s.start_of(int(step_time[steps_in][-1]) + 1)
            p_window = float(min(1.0, p_inside[row] * max(int(windows[row, 2]), 1)))
        rows.append({
            "level": col, "unit": names[u], "code": u, "sessions": unit_sessions[u],
            "failures": unit_failures[u], "baseline": baseline[u],
            "p_value": min(1.0, 2 * min(p_whole[u], p_window)), "p_whole": p_whole[u],
            "p_window": p_window, "z": z[u],
            "evidence": max(z[u] * abs(z[u]) / 2, -np.log(max(min(p_whole[u], p_window), 1e-300))),
            "window_start": window_start, "window_end": window_end,
            "window_sessions": window_sessions, "window_failures": window_failures,
            "window_baseline": window_baseline,
        })
    return pd.DataFrame(rows)


def _test_all(s: _Sessions, cols: list[str], min_sessions: int, min_failures: int, alpha: float,
              headlines: list[tuple[str, int]]) -> pd.DataFrame:
    """Every unit of every level, allowing for `headlines` (each tested without its own bit)."""
    tables = [t for t in (_level_table(s, col, min_sessions, s.cause) for col in cols) if len(t)]
    if not tables:
        return pd.DataFrame()
    out = pd.concat(tables, ignore_index=True)
    for bit, (level, code) in enumerate(headlines):
        own = _level_table(s, level, min_sessions, s.cause & ~(1 << bit), only=code)
        at = np.flatnonzero((out["level"] == level).to_numpy() & (out["code"] == code).to_numpy())
        if len(own) and len(at):
            out.loc[at[0], own.columns] = own.iloc[0].to_numpy()
    out["q_value"] = q_values(out["p_value"].to_numpy(dtype=float), method="by")
    out["significant"] = (out["q_value"] < alpha) & (out["failures"] >= min_failures)
    return out


def _masked_p(s: _Sessions, unit: np.ndarray, pool: np.ndarray) -> float:
    """Exact p-value that the `unit` sessions failed more than the `pool` sessions (which hold
    them) in the same strata and cause cells; 1.0 when there is nothing to compare."""
    key = s.stratum * s.causes + s.cause
    cells, pool_sessions = np.unique(key[pool], return_counts=True)
    pool_failures = np.bincount(np.searchsorted(cells, key[pool]), weights=s.fail[pool],
                                minlength=len(cells))
    mine = unit & pool
    if not mine.any():
        return 1.0
    at = np.searchsorted(cells, key[mine])
    n = np.bincount(at, minlength=len(cells))
    x = np.bincount(at, weights=s.fail[mine], minlength=len(cells))
    used = n > 0
    return float(stratified_excess(n[used], x[used], pool_sessions[used], pool_failures[used],
                                   np.zeros(int(used.sum()), np.int64), 1)[0][0])


def _window_mask(s: _Sessions, window: tuple[Any, Any]) -> np.ndarray | None:
    """Sessions whose bucket lies in the window [start, end), or None for no window."""
    start, end = window
    if pd.isna(start) or pd.isna(end):
        return None
    first = int((pd.Timestamp(start) - s.origin) // s.step)
    last = int((pd.Timestamp(end) - s.origin) // s.step)
    return (s.bucket >= first) & (s.bucket < last)


def _narrowest(s: _Sessions, key: tuple[str, int], candidates: list[tuple[str, int]],
               cols: list[str], alpha: float, windows: dict[tuple[str, int], tuple[Any, Any]]
               ) -> tuple[str, int]:
    """The unit inside `key` that carries all of its excess (a broken pod in its replicaset, a
    persona's only voice), followed down as far as it goes; `key` itself when there is none.

    A candidate counts as inside when NEST_SHARE of its sessions are in `key`; it carries the
    excess when the rest of `key` without it shows none (p >= alpha), over the whole period
    and inside the window where `key` was worst. Two units holding the same sessions are one:
    the earlier level is named.
    """
    seen = {key}
    while True:
        outer = s.unit(*key)
        size = int(outer.sum())
        inside = []
        for other in candidates:
            if other in seen:
                continue
            mask = s.unit(*other)
            shared = int((mask & outer).sum())
            if shared < NEST_SHARE * mask.sum():
                continue
            same = shared >= NEST_SHARE * size
            if same and cols.index(other[0]) > cols.index(key[0]):
                continue
            inside.append((other, mask))
        step = None
        during = _window_mask(s, windows.get(key, (None, None)))
        for other, mask in sorted(inside, key=lambda item: -int((s.fail & item[1]).sum())):
            rest = outer & ~mask
            if _masked_p(s, rest, ~mask) < alpha:
                continue
            if during is not None and _masked_p(s, rest & during, ~mask & during) < alpha:
                continue
            step = other
            break
        if step is None:
            return key
        seen.add(step)
        key = step


def _confirm(s: _Sessions, headlines: list[tuple[str, int]], alpha: float,
             windows: dict[tuple[str, int], tuple[Any, Any]]) -> list[tuple[str, int]]:
    """Headlines that still show an excess on their sessions outside every other headline,
    over the whole period or inside their window.

    Catches what comparing within time buckets cannot: a rollout ramping up inside the very
    hour a provider went down carries more of the outage's sessions than its bucket-mates.
    """
    kept = list(headlines)
    saved = s.cause, s.causes
    s.cause, s.causes = np.zeros(len(s.bucket), dtype=np.int64), 1
    try:
        for key in reversed(headlines):
            others = [k for k in kept if k != key]
            if not others:
                break
            elsewhere = np.zeros(len(s.bucket), dtype=bool)
            for other in others:
                elsewhere |= s.unit(*other)
            mine = s.unit(*key) & ~elsewhere
            if _masked_p(s, mine, ~elsewhere) < alpha:
                continue
            during = _window_mask(s, windows.get(key, (None, None)))
            if during is not None and _masked_p(s, mine & during, ~elsewhere & during) < alpha:
                continue
            kept.remove(key)
    finally:
        s.cause, s.causes = saved
    return kept


def _failed_overlap(s: _Sessions, a: tuple[str, int], b: tuple[str, int]) -> float:
    """The largest share of either unit's failures that the two units share."""
    fa = s.fail & s.unit(*a)
    fb = s.fail & s.unit(*b)
    shared = int((fa & fb).sum())
    return shared / max(1, min(int(fa.sum()), int(fb.sum())))


def _choose_headlines(s: _Sessions, out: pd.DataFrame, previous: list[tuple[str, int]],
                      cols: list[str], alpha: float) -> list[tuple[str, int]]:
    """Significant units taken strongest first; a unit sharing many failures with one taken (or
    waiting) in this pass waits for the next pass, where it is tested with that one allowed for."""
    sig = out[out["significant"]].copy()
    sig["rank"] = [cols.index(level) for level in sig["level"]]
    sig = sig.sort_values(["evidence", "rank"], ascending=[False, True], kind="stable")
    keys = list(zip(sig["level"], sig["code"]))
    windows = dict(zip(keys, zip(sig["window_start"], sig["window_end"])))
    kept = [k for k in previous if k in keys]
    fresh: list[tuple[str, int]] = []
    waiting: list[tuple[str, int]] = []
    for key in keys:
        if len(kept) + len(fresh) >= MAX_CAUSES:
            break
        if key in kept:
            continue
        key = _narrowest(s, key, keys, cols, alpha, windows)
        if key in kept or key in fresh:
            continue
        # A unit waits when it shares failures with one taken or waiting in this pass.
        if all(_failed_overlap(s, key, other) < SHARED_FAILURES for other in fresh + waiting):
            fresh.append(key)
        else:
            waiting.append(key)
    return kept + fresh


def rank_suspects(df: pd.DataFrame, levels: str | Sequence[str] | None = None,
                  failures: FailureSpec = None, freq: str = "1h",
                  min_sessions: int = MIN_SESSIONS, min_failures: int = MIN_FAILURES,
                  alpha: float = 0.05, stratum_failures: int = STRATUM_FAILURES) -> pd.DataFrame:
    """Units of every attribute (engine, client, provider, persona) ranked by failure excess.

    Each unit is compared with the rest of the fleet over the same time buckets of `freq`,
    over the whole period and in its worst window (see the `analysis` package docstring for
    what each column means). One multiple-testing correction covers every unit of every level.

    Causes are found in passes: the strongest significant units become headlines; then every
    unit is tested again comparing like with like on the headlines found (a session of a bad
    SDK release is only compared with other sessions of that release at the same time), so a
    pod is not blamed for the SDK's failures, and two concurrent incidents do not hide each
    other. Passes repeat until the headlines settle.

    Parameters
    ----------
    df
        A sessions frame (from `sessions_frame` or `fetch_sessions`).
    levels
        Columns whose values are the units; None for every column of `DEFAULT_LEVELS` the
        frame has. When two units hold the same sessions, the one of the earlier level is named.
    failures
        Which exit statuses count as failures (see `is_failure`).
    freq
        The time bucket of the comparisons and of the windows, a fixed pandas offset like "1h".
    min_sessions, min_failures
        A unit is tested with at least `min_sessions` ended sessions and flagged with at least
        `min_failures` failures.
    alpha
        The q-value below which a unit counts as significant.
    stratum_failures
        Time buckets are merged into strata expected to hold this many failures fleet-wide.

    Returns
    -------
    DataFrame
        One row per tested unit: headlines (`flagged`) first, largest lift in their window
        first; then significant units explained by a headline (`explained_by`), then the rest,
        by p-value. `df.attrs` records the settings, passes and how many units were not tested.

    Raises
    ------
    ValueError
        For an unknown column, a bad `freq`, count or `alpha`, naming the value.
    TypeError
        When `df` is not a DataFrame or `failures` is not a valid rule.
    """
    check_frame(df, ["exit_status", "start_time"])
    if levels is None:
        cols = [c for c in DEFAULT_LEVELS if c in df.columns]
        if not cols:
            raise ValueError("the frame has none of the default levels "
                             f"({', '.join(DEFAULT_LEVELS)}); name the columns with levels=")
    else:
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
                             "stratum_failures": stratum_failures, "levels": list(cols),
                             "strata": int(len(np.unique(s.stratum))),
                             "min_failures": min_failures, "sessions": int(len(s.bucket))}
    raw = _test_all(s, cols, min_sessions, min_failures, alpha, [])
    out, headlines, passes = raw, [], 1
    if not raw.empty:
        headlines = _choose_headlines(s, raw, [], cols, alpha)
        while passes < MAX_PASSES:
            passes += 1
            s.causes = 1 << len(headlines)
            s.cause = np.zeros(len(s.bucket), dtype=np.int64)
            for bit, key in enumerate(headlines):
                s.cause |= s.unit(*key).astype(np.int64) << bit
            out = _test_all(s, cols, min_sessions, min_failures, alpha, headlines)
            chosen = _choose_headlines(s, out, headlines, cols, alpha)
            if chosen == headlines:
                break
            headlines = chosen
        headlines = _confirm(s, headlines, alpha, dict(zip(zip(out["level"], out["code"]),
                                                           zip(out["window_start"], out["window_end"]))))
    attrs.update(passes=passes, untested_units=int(sum(len(s.names[c]) for c in cols) - len(raw)))
    if raw.empty:
        table = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _SUSPECT_COLUMNS.items()})
        table.attrs.update(attrs)
        return table
    table = _combine(s, raw, out, headlines, cols)
    table["finding"] = [finding_sentence(row) for row in table.itertuples(index=False)]
    for column in ("window_start", "window_end"):   # all-NaT columns arrive without a zone
        table[column] = pd.to_datetime(table[column], utc=True)
    table = table[list(_SUSPECT_COLUMNS)].astype(_SUSPECT_COLUMNS).reset_index(drop=True)
    table.attrs.update(attrs)
    return table


def _combine(s: _Sessions, raw: pd.DataFrame, final: pd.DataFrame,
             headlines: list[tuple[str, int]], cols: list[str]) -> pd.DataFrame:
    """Headlines as tested last (allowing for each other), every other unit as first tested
    (against the whole fleet); units whose excess a headline carries say which."""
    table = raw.copy()
    keys = list(zip(table["level"], table["code"]))
    final_at = {k: i for i, k in enumerate(zip(final["level"], final["code"]))}
    for i, key in enumerate(keys):
        if key in headlines:
            table.loc[i] = final.loc[final_at[key], table.columns].to_numpy()
    table["flagged"] = [k in headlines for k in keys]
    table["significant"] = table["significant"].astype(bool)
    explained = np.full(len(table), None, dtype=object)
    head_masks = {k: s.fail & s.unit(*k) for k in headlines}
    for i, key in enumerate(keys):
        if table.at[i, "flagged"] or not table.at[i, "significant"]:
            continue
        mine = s.fail & s.unit(*key)
        shared = {k: int((mine & m).sum()) for k, m in head_masks.items()}
        best = max(shared, key=lambda k: shared[k], default=None)
        if best is not None and shared[best] > 0:
            explained[i] = f"{unit_name(best[0], s.names[best[0]][best[1]])}"
    table["explained_by"] = pd.array(explained, dtype="string")
    table["family"] = [family_of(level) for level in table["level"]]
    table["rate"] = table["failures"] / table["sessions"]
    table["expected"] = table["baseline"] * table["sessions"]
    with np.errstate(divide="ignore", invalid="ignore"):
        table["lift"] = table["rate"] / table["baseline"]
        table["window_rate"] = np.where(table["window_sessions"] > 0, table["window_failures"]
                                        / table["window_sessions"].clip(lower=1), np.nan)
        window_lift = table["window_rate"] / table["window_baseline"]
    _engine_places(s, table, cols)
    # Headlines by how far they exceed their peers at their worst, everything else by evidence.
    table["tier"] = np.where(table["flagged"], 0, np.where(table["significant"], 1, 2))
    table["severity"] = np.where(table["flagged"], -window_lift.fillna(table["lift"]).fillna(0.0), 0.0)
    table["p_value"] = table["p_value"].astype(float)
    return table.sort_values(["tier", "severity", "p_value", "z"],
                             ascending=[True, True, True, False], kind="stable")


def unit_name(level: str, unit: str) -> str:
    """How a unit is named in sentences: "pod anam-engine-…", "sdk_version @anam-ai/js-sdk@3.6.0"."""
    return f"{unit_label(level)} {unit}"


def _engine_places(s: _Sessions, table: pd.DataFrame, cols: list[str]) -> None:
    """Fill `region` (the engine region holding the unit) and `parent` (the next coarser engine
    unit holding it), where at least NEST_SHARE of the unit's sessions are there."""
    engine = [c for c in ENGINE_LEVELS if c in cols]
    region = np.full(len(table), None, dtype=object)
    parent = np.full(len(table), None, dtype=object)
    nests: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for i, (level, code, unit) in enumerate(zip(table["level"], table["code"], table["unit"])):
        if level == "engine_region":
            region[i] = unit
        if level not in engine:
            continue
        for coarse in engine[engine.index(level) + 1:]:
            if (level, coarse) not in nests:
                nests[level, coarse] = _modal(s.codes[level], s.codes[coarse], len(s.names[level]),
                                              len(s.names[coarse]))
            modal, share = nests[level, coarse]
            if modal[code] < 0 or share[code] < NEST_SHARE:
                continue
            name = s.names[coarse][modal[code]]
            if parent[i] is None:
                parent[i] = unit_name(coarse, name)
            if coarse == "engine_region":
                region[i] = name
    table["region"], table["parent"] = region, parent
