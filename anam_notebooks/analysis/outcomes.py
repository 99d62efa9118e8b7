"""Counting sessions by unit, time bucket and outcome: the one step that touches every row.

Every count-based analysis is, underneath, a table of counts: sessions per group (a unit, a time
bucket, a side of a split) × exit status × ended-or-active. `outcome_counts` computes that
table from a pandas frame (groupby) or from a `SessionDataset` (one Ibis aggregation run by the
engine: DuckDB, Spark, a warehouse), giving the same small table either way. The analyses then
run their statistics on it in numpy, one code path for both inputs, so the two agree exactly.

Which statuses count as failures is applied to the counts, not pushed into the engine: a
`failures=` rule may be any Python function, and the counts carry every distinct status.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from math import gcd
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from ..data.checks import check_frame, ended_mask
from ..data.dataset import SessionDataset
from .failures import FailureSpec, is_failure

#: What the count-based analyses take: a sessions frame, or a dataset counted in its engine.
Sessions: TypeAlias = pd.DataFrame | SessionDataset

_US = 1_000_000
_QUARTER_HOUR = 900  # every time zone's offset from UTC is a whole number of quarter hours


def columns_of(source: Sessions) -> list[str]:
    """The columns of a frame or a dataset (a dataset's id is a column, a frame's the index)."""
    if isinstance(source, SessionDataset):
        return [c for c in source.columns if c != "id"]
    return list(source.columns)


def check_source(source: object, needs: Sequence[str]) -> Sessions:
    """`source` itself when it is a frame or a dataset holding every column in `needs`.

    Raises
    ------
    TypeError
        `source` is neither a DataFrame nor a SessionDataset.
    ValueError
        A needed column is missing (the message lists the valid ones).
    """
    if isinstance(source, SessionDataset):
        missing = [c for c in needs if c not in source.columns]
        if missing:
            raise ValueError(f"column {', '.join(map(repr, missing))} is not in the dataset; valid "
                             f"columns: {', '.join(map(repr, columns_of(source)))}")
        return source
    if not isinstance(source, pd.DataFrame):
        raise TypeError(f"expected a sessions DataFrame (from sessions_frame) or a SessionDataset "
                        f"(from session_dataset), got {type(source).__name__}")
    return check_frame(source, needs)


def outcome_counts(source: Sessions, keys: Sequence[str] = (), *, step: pd.Timedelta | None = None,
                   split_at: pd.Timestamp | None = None,
                   window: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None,
                   failing: Collection[str] | None = None) -> pd.DataFrame:
    """Sessions per group × exit status × ended, counted by pandas or by the dataset's engine.

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions.
    keys : sequence of str
        Columns to group by (missing values form their own group, as None).
    step : Timedelta, optional
        Adds a `bucket` key: the start time floored to `step` since the epoch, in UTC, as
        whole seconds since the epoch (None for sessions without a start time).
    split_at : Timestamp, optional
        Adds an `after` key: True for sessions started at/after it, False before, None without
        a start time.
    window : (start, end), optional
        Only sessions with a start time in [start, end) (None: open end).
    failing : collection of str, optional
        The exit statuses that count as failures (see `failing_statuses`): the counts then
        carry a `failed` key instead of `exit_status`, fewer and cheaper cells.

    Returns
    -------
    pandas.DataFrame
        One row per occurring combination: the keys (Python objects, None when missing),
        `bucket`/`after` when asked, `exit_status` (str or None) or `failed` (bool),
        `ended` (bool), `n` (int64).
    """
    keys = list(keys)
    if isinstance(source, SessionDataset):
        counts = _engine_counts(source, keys, step, split_at, window, failing)
    else:
        counts = _frame_counts(source, keys, step, split_at, window, failing)
    for column in counts.columns:
        if column not in ("n", "ended", "bucket", "failed"):
            values = counts[column].astype(object)
            counts[column] = values.where(values.notna(), None)
    counts["ended"] = counts["ended"].astype(bool)
    counts["n"] = counts["n"].astype(np.int64)
    return counts


def _frame_counts(df: pd.DataFrame, keys: list[str], step: pd.Timedelta | None,
                  split_at: pd.Timestamp | None, window: Any, failing: Collection[str] | None
                  ) -> pd.DataFrame:
    columns: dict[str, Any] = {k: df[k].array for k in keys}
    keep = None
    if step is not None or split_at is not None or window is not None:
        start_us = df["start_time"].to_numpy(dtype="datetime64[us]").view(np.int64)
        known = start_us != np.iinfo(np.int64).min  # NaT
        if step is not None:
            step_s = _whole_seconds(step)
            bucket = pd.array(np.floor_divide(start_us, _US) // step_s * step_s, dtype="Int64")
            bucket[~known] = pd.NA
            columns["bucket"] = bucket
        if split_at is not None:
            after = pd.array(start_us >= _to_us(split_at), dtype="boolean")
            after[~known] = pd.NA
            columns["after"] = after
        if window is not None:
            lo, hi = window
            keep = known & (start_us >= _to_us(lo) if lo is not None else True) & (
                start_us < _to_us(hi) if hi is not None else True)
    if failing is None:
        columns["exit_status"] = df["exit_status"].array
    else:
        columns["failed"] = df["exit_status"].isin(list(failing)).to_numpy(dtype=bool)
    columns["ended"] = ended_mask(df)
    frame = pd.DataFrame(columns)
    if keep is not None:
        frame = frame[keep]
    counts = frame.groupby(list(frame.columns), dropna=False, observed=True, sort=False).size()
    return counts.rename("n").reset_index()


def _engine_counts(ds: SessionDataset, keys: list[str], step: pd.Timedelta | None,
                   split_at: pd.Timestamp | None, window: Any, failing: Collection[str] | None
                   ) -> pd.DataFrame:
    t = ds.table
    if window is not None:
        lo, hi = window
        t = t.filter(t.start_time.notnull())
        if lo is not None:
            t = t.filter(t.start_time >= lo.to_pydatetime())
        if hi is not None:
            t = t.filter(t.start_time < hi.to_pydatetime())
    named: dict[str, Any] = {k: t[k] for k in keys}
    if step is not None:
        named["bucket"] = _bucket_seconds(t, _whole_seconds(step))
    if split_at is not None:
        named["after"] = t.start_time >= split_at.to_pydatetime()
    if failing is None:
        named["exit_status"] = t.exit_status
    else:
        import ibis

        named["failed"] = (t.exit_status.isin(sorted(failing)).fill_null(False) if failing
                           else ibis.literal(False))
    named["ended"] = ~t.is_active.fill_null(False)
    counts = t.group_by(**named).aggregate(n=t.count()).to_pyarrow().to_pandas()
    if "bucket" in counts.columns:
        counts["bucket"] = pd.array(counts["bucket"], dtype="Int64")
    if "after" in counts.columns:
        counts["after"] = pd.array(counts["after"], dtype="boolean")
    return counts


def _bucket_seconds(t: Any, step_s: int) -> Any:
    """Start times floored to `step_s` seconds since the epoch, as whole seconds (an Ibis
    expression). Ibis spells epoch seconds through a cast to a zone-less timestamp, which costs
    DuckDB a calendar conversion per row (3x the whole count); DuckDB's own `epoch_us` does not."""
    try:
        backend = t.get_backend().name
    except Exception:  # an unbound table: the portable spelling
        backend = None
    if backend == "duckdb":
        return _duckdb_epoch_us()(t.start_time) // (step_s * _US) * step_s
    return t.start_time.epoch_seconds().floor().cast("int64") // step_s * step_s


@cache
def _duckdb_epoch_us() -> Any:
    import ibis
    import ibis.expr.datatypes as dt

    def epoch_us(moment: Any) -> int:
        """Microseconds since the epoch (DuckDB's builtin)."""
        raise NotImplementedError  # never called: Ibis compiles it to EPOCH_US(...)

    epoch_us = ibis.udf.scalar.builtin(epoch_us, name="epoch_us",
                                       signature=((dt.Timestamp(timezone="UTC"),), dt.int64))
    return epoch_us


def _whole_seconds(step: pd.Timedelta) -> int:
    seconds, rest = divmod(int(step / pd.Timedelta(microseconds=1)), _US)
    if rest or seconds <= 0:
        raise ValueError(f"freq={step!r} must be a whole number of seconds (e.g. '15min', '1h')")
    return seconds


def _to_us(moment: pd.Timestamp) -> int:
    return int(pd.Timestamp(moment).value) // 1000  # .value is in nanoseconds whatever the unit


def counting_step(step: pd.Timedelta, zone_is_utc: bool) -> pd.Timedelta:
    """The bucket to count in: `step` itself in UTC; for another zone the largest step that
    divides both it and a quarter hour, so that wall-clock buckets are unions of counted ones
    (zone offsets and their changes fall on quarter hours)."""
    if zone_is_utc:
        return step
    return pd.Timedelta(seconds=gcd(_whole_seconds(step), _QUARTER_HOUR))


def failed_and_ended(counts: pd.DataFrame, failures: FailureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per count row: is it of failed sessions, is it of ended ones (the failure rule applied
    once per distinct status; active sessions never count as failed)."""
    ended = counts["ended"].to_numpy(dtype=bool)
    if "failed" in counts.columns:  # counted with `failing`: the rule was applied to the statuses
        return counts["failed"].to_numpy(dtype=bool) & ended, ended
    failed = is_failure(counts["exit_status"], failures) & ended
    return failed, ended


def failing_statuses(source: Sessions, failures: FailureSpec = None) -> list[str]:
    """The exit statuses present in `source` that `failures` counts as failures: the rule runs
    once per distinct status, in Python, whatever engine holds the sessions."""
    if isinstance(source, SessionDataset):
        t = source.table
        present = t.select(status=t.exit_status).distinct().to_pyarrow().column("status").to_pylist()
    else:
        present = list(pd.Series(source["exit_status"]).dropna().astype(object).unique())
    statuses = sorted(str(s) for s in present if s is not None)
    flags = is_failure(pd.Series(statuses, dtype=object), failures)
    return [s for s, f in zip(statuses, flags) if f]


# ------------------------------------------------------------------ per unit × time bucket

@dataclass(frozen=True)
class UnitBucketCounts:
    """Ended sessions and failures per unit × time bucket, for one level (column).

    `units` are the level's values (str; missing values are left out), `buckets` the bucket
    starts (UTC, ascending, shared by every level of one `unit_bucket_counts` call);
    `sessions[i, j]` and `failures[i, j]` count unit i's ended sessions and failures in bucket j.
    """

    level: str
    units: np.ndarray
    buckets: pd.DatetimeIndex
    sessions: np.ndarray
    failures: np.ndarray


@dataclass(frozen=True)
class FleetCounts:
    """`unit_bucket_counts`' answer: per level, units × buckets; and the whole fleet per bucket."""

    buckets: pd.DatetimeIndex
    sessions: np.ndarray
    failures: np.ndarray
    levels: dict[str, UnitBucketCounts]


def unit_bucket_counts(source: Sessions, levels: Sequence[str], step: pd.Timedelta,
                       failures: FailureSpec = None) -> FleetCounts:
    """Ended sessions and failures per unit × time bucket for each level, and fleet-wide per
    bucket: what a stratified or windowed comparison of units needs, and nothing more.

    A frame is counted by pandas, a dataset by its engine (one aggregation per level); either
    way only these arrays come back, never the sessions. Sessions without a start time are
    left out (they belong to no bucket).

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions.
    levels : sequence of str
        The columns whose values are units (e.g. engine_pod, sdk_version).
    step : Timedelta
        The bucket size (whole seconds), counted from the epoch in UTC.
    failures : collection of str, callable or None
        Which exit statuses count as failures (see `is_failure`).

    Returns
    -------
    FleetCounts
        Bucket starts, the fleet's sessions and failures per bucket, and one
        `UnitBucketCounts` per level, all on the same buckets.
    """
    check_source(source, ["start_time", "exit_status", *levels])
    failing = failing_statuses(source, failures)
    counted = {level: outcome_counts(source, [level], step=step, failing=failing) for level in levels}
    counted = {level: c[c["bucket"].notna()] for level, c in counted.items()}
    first = next(iter(counted.values())) if counted else outcome_counts(source, (), step=step, failing=failing)
    first = first[first["bucket"].notna()]
    edges = np.unique(first["bucket"].to_numpy(dtype=np.int64))
    buckets = pd.DatetimeIndex(pd.to_datetime(edges, unit="s", utc=True))
    # Every session is in one unit of a level or in its missing-value group: the fleet is their sum.
    failed, ended = failed_and_ended(first, failures)
    column = np.searchsorted(edges, first["bucket"].to_numpy(dtype=np.int64))
    n = first["n"].to_numpy()
    total = np.bincount(column, weights=n * ended, minlength=len(edges)).astype(np.int64)
    failing_n = np.bincount(column, weights=n * failed, minlength=len(edges)).astype(np.int64)
    per_level = {}
    for level, counts in counted.items():
        counts = counts[counts[level].notna()]
        failed, ended = failed_and_ended(counts, failures)
        names, row = np.unique(counts[level].map(str).to_numpy(dtype=object), return_inverse=True)
        col = np.searchsorted(edges, counts["bucket"].to_numpy(dtype=np.int64))
        flat = row * len(edges) + col
        n = counts["n"].to_numpy()
        size = len(names) * len(edges)
        per_level[level] = UnitBucketCounts(
            level, names.astype(str), buckets,
            np.bincount(flat, weights=n * ended, minlength=size).astype(np.int64).reshape(len(names), -1),
            np.bincount(flat, weights=n * failed, minlength=size).astype(np.int64).reshape(len(names), -1))
    return FleetCounts(buckets, total, failing_n, per_level)


def wall_buckets(seconds: pd.Series, zone: Any, step: pd.Timedelta) -> pd.Series:
    """Counted buckets (UTC seconds since the epoch, from `outcome_counts` with
    `counting_step`) as naive wall-clock bucket starts in `zone`, floored to `step`."""
    utc = pd.to_datetime(seconds.to_numpy(dtype=np.int64), unit="s", utc=True)
    wall = pd.Series(utc, index=seconds.index).dt.tz_convert(zone).dt.tz_localize(None)
    return wall.dt.floor(step).dt.as_unit("us")


def first_seen(source: Sessions, column: str) -> pd.Series:
    """When each value of `column` first started a session (UTC), by value as str; values
    never seen with a start time are left out."""
    if isinstance(source, SessionDataset):
        t = source.table
        t = t.filter(t[column].notnull() & t.start_time.notnull())
        found = t.group_by(value=t[column].cast("string")).aggregate(
            first=t.start_time.min()).to_pyarrow().to_pandas()
        first = pd.to_datetime(found["first"], utc=True).dt.as_unit("us")
        return pd.Series(first.to_numpy(), index=found["value"].astype(object).to_numpy(),
                         name="start_time").sort_index()
    known = source[source[column].notna() & source["start_time"].notna()]
    found = known.groupby(known[column].astype(object).map(str))["start_time"].min()
    return found.dt.tz_convert("UTC").dt.as_unit("us").rename("start_time")


def window_opened(source: Sessions) -> pd.Timestamp | None:
    """The earliest start time in `source` (UTC), or None when no session has one."""
    if isinstance(source, SessionDataset):
        t = source.table
        found = t.aggregate(first=t.start_time.min()).to_pyarrow().to_pandas()["first"]
        first = pd.to_datetime(found, utc=True)
    else:
        first = source["start_time"]
    earliest = first.min()
    return None if pd.isna(earliest) else pd.Timestamp(earliest).tz_convert("UTC")
