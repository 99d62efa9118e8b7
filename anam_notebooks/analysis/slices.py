"""What a notebook shows of a window beside the counts: its totals, the status mix per group, a
unit against the rest of the fleet, and bounded slices of rows (a timeline, the explorer).

Each takes a sessions frame or a `SessionDataset`. On a dataset the totals and the mix are
counted by its engine, and the rows come as a bounded slice (the newest `SHOWN_ROWS` of what
is asked for), so a window far larger than memory can still be looked at.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..data.checks import check_count
from ..data.dataset import SessionDataset
from .counts import FLEET
from .exemplars import _field, finding_sessions
from .failures import FailureSpec
from .outcomes import Sessions, check_source, failed_and_ended, outcome_counts

#: Rows read from a dataset for a view that draws sessions one by one (a timeline, the explorer).
SHOWN_ROWS = 20_000

#: The group of `versus_rest` that holds every other session.
REST_OF_FLEET = "rest of the fleet"


def overview(source: Sessions, failures: FailureSpec = None) -> dict[str, Any]:
    """Totals of a window: sessions, active, ended and failed, first and last start, and how
    the ended sessions ended.

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions (a dataset counts in its engine).
    failures : FailureSpec
        Which exit statuses count as failures (see `is_failure`).

    Returns
    -------
    dict
        ``sessions``, ``active``, ``ended``, ``failed`` (ints); ``rate`` (failed ÷ ended, 0
        without ended sessions); ``first``, ``last`` (UTC Timestamps, None when empty);
        ``statuses`` (a Series: ended sessions per exit status, most common first).

    Raises
    ------
    TypeError, ValueError
        `source` is neither a frame nor a dataset with `exit_status` and `start_time`.
    """
    check_source(source, ["exit_status", "start_time"])
    counts = outcome_counts(source)
    failed, ended = failed_and_ended(counts, failures)
    n = counts["n"].to_numpy()
    statuses = (counts[ended & counts["exit_status"].notna().to_numpy()]
                .groupby("exit_status", sort=True)["n"].sum().sort_values(ascending=False, kind="stable"))
    if isinstance(source, SessionDataset):
        t = source.table
        span = t.aggregate(first=t.start_time.min(), last=t.start_time.max()).to_pyarrow().to_pandas()
        first, last = (pd.to_datetime(span[c], utc=True).iloc[0] for c in ("first", "last"))
    else:
        first, last = source["start_time"].min(), source["start_time"].max()
    total_ended, total_failed = int(n[ended].sum()), int(n[failed].sum())
    return {"sessions": int(n.sum()), "active": int(n[~ended].sum()), "ended": total_ended,
            "failed": total_failed, "rate": total_failed / total_ended if total_ended else 0.0,
            "first": None if pd.isna(first) else pd.Timestamp(first),
            "last": None if pd.isna(last) else pd.Timestamp(last), "statuses": statuses.rename("sessions")}


def status_mix(source: Sessions, by: str = "engine_version") -> pd.DataFrame:
    """The share of each exit status among the ended sessions of each group of `by`.

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions (a dataset counts in its engine).
    by : str
        The column to group by.

    Returns
    -------
    DataFrame
        Index: the groups (sessions without a value left out); columns: the exit statuses
        (``(none)`` for ended sessions without one); each row sums to 1.

    Raises
    ------
    TypeError, ValueError
        `source` is neither a frame nor a dataset holding `by` and `exit_status`.
    """
    check_source(source, [by, "exit_status"])
    if isinstance(source, pd.DataFrame):
        ended = source[~source["is_active"]] if "is_active" in source.columns else source
        return pd.crosstab(ended[by], ended["exit_status"].astype("string").fillna("(none)"), normalize="index")
    counts = outcome_counts(source, [by])
    counts = counts[counts["ended"].to_numpy(dtype=bool) & counts[by].notna().to_numpy()]
    statuses = counts["exit_status"].map(lambda s: "(none)" if s is None else str(s)).rename("exit_status")
    table = counts["n"].groupby([counts[by].map(str).rename(by), statuses]).sum().unstack(fill_value=0)
    table = table.sort_index().sort_index(axis=1)
    return table.div(table.sum(axis=1), axis=0)


def versus_rest(source: Sessions, level: str, value: Any) -> Sessions:
    """`source` with a `group` column: `value` for sessions whose `level` is `value`, "rest of
    the fleet" for the others (missing for sessions without a `level`), to chart one unit
    against everyone else (e.g. ``plots.host_health(versus_rest(df, level, value), by="group")``).

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions (a dataset gains the column lazily, in its engine).
    level : str
        The column.
    value : object
        The unit (compared as text).

    Returns
    -------
    DataFrame or SessionDataset
        The same kind as `source`.

    Raises
    ------
    TypeError, ValueError
        `source` is neither a frame nor a dataset holding `level`.
    """
    check_source(source, [level])
    if isinstance(source, pd.DataFrame):
        return source.assign(group=(source[level].astype("string") == value).map(
            {True: value, False: REST_OF_FLEET}))
    import ibis

    t = source.table
    group = ibis.cases((t[level].isnull(), ibis.null("string")),
                       (t[level].cast("string") == str(value), str(value)), else_=REST_OF_FLEET)
    return SessionDataset(t.mutate(group=group), path=source.path, notes=source.notes)


def _level_unit(finding: Any) -> tuple[str, str]:
    return str(_field(finding, "level")), str(_field(finding, "unit"))


def sessions_shown(source: Sessions, finding: Any = None, limit: int = SHOWN_ROWS) -> pd.DataFrame:
    """The sessions a timeline or explorer shows: a finding's unit (an engine pod beside the
    other pods of its replicaset), or every session without one.

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions.
    finding : row of rank_suspects, finding dict, or None
        Its `level` and `unit` pick the sessions (for a fleet-wide finding, those of its window).
    limit : int
        From a dataset, at most this many (the newest); a frame is filtered as it is.

    Returns
    -------
    DataFrame
        A sessions frame, newest first when read from a dataset.

    Raises
    ------
    TypeError, ValueError
        `source` is neither a frame nor a dataset, the finding's level is not one of its
        columns, or `limit` is not a whole number >= 0.
    """
    limit = check_count(limit, "limit")
    if finding is None:
        check_source(source, ["start_time"])
        return source.to_frame(limit=limit) if isinstance(source, SessionDataset) else source
    level, unit = _level_unit(finding)
    if isinstance(source, pd.DataFrame):
        subject = finding_sessions(source, finding)   # a unit's sessions, or the fleet's in its window
        if level == "engine_pod":   # the pod beside its siblings
            subject = source[source["engine_replicaset"].isin(subject["engine_replicaset"].dropna().unique())]
        return subject
    if level == FLEET:
        start, end = _field(finding, "window_start"), _field(finding, "window_end")
        if start is None or pd.isna(start) or end is None or pd.isna(end):
            return source.to_frame(limit=limit)
        t = source.table
        lo, hi = pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()
        return source.to_frame(where=(t.start_time >= lo) & (t.start_time < hi), limit=limit)
    check_source(source, [level])
    t = source.table
    where = t[level].cast("string") == unit
    if level == "engine_pod":
        sets = t.filter(where & t.engine_replicaset.notnull()).select("engine_replicaset").distinct()
        where = t.engine_replicaset.isin(sets.to_pyarrow().column(0).to_pylist())
    return source.to_frame(where=where, limit=limit)


__all__ = ["REST_OF_FLEET", "SHOWN_ROWS", "overview", "sessions_shown", "status_mix", "versus_rest"]
