"""Exemplar sessions to hand to engineering: the failures that illustrate a finding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..data.checks import check_count, check_frame
from ..data.dataset import SessionDataset
from .counts import FLEET
from .failures import FailureSpec, is_failure
from .outcomes import Sessions, check_source, failing_statuses

#: The columns an exemplar table shows, when the frame has them.
EXEMPLAR_COLUMNS: tuple[str, ...] = ("start_time", "duration", "exit_status", "engine_pod",
                                     "engine_version", "client_label")


def _field(finding: Any, name: str) -> Any:
    if isinstance(finding, Mapping):
        if name in ("window_start", "window_end"):
            return (finding.get("window") or {}).get(name.removeprefix("window_"))
        return finding.get(name)
    return finding[name]


def finding_sessions(df: pd.DataFrame, finding: Any) -> pd.DataFrame:
    """The sessions a finding is about: its unit's sessions (`level`, `unit`), or for a
    fleet-wide finding (level "fleet") every session started inside its window.

    Parameters
    ----------
    df : DataFrame
        A sessions frame.
    finding : row of rank_suspects or finding dict
        A unit and (for "fleet", required) its window.

    Returns
    -------
    DataFrame
        The rows of `df` the finding covers.

    Raises
    ------
    TypeError, ValueError
        When `df` is not a sessions frame or the finding's level is not a column.
    """
    level, unit = _field(finding, "level"), _field(finding, "unit")
    if level == FLEET:
        check_frame(df, ["start_time"])
        start, end = _field(finding, "window_start"), _field(finding, "window_end")
        if start is None or pd.isna(start) or end is None or pd.isna(end):
            return df
        inside = (df["start_time"] >= pd.Timestamp(start)) & (df["start_time"] < pd.Timestamp(end))
        return df[inside.fillna(False).to_numpy(dtype=bool)]
    check_frame(df, [level])
    return df[(df[level].astype("string") == str(unit)).fillna(False).to_numpy(dtype=bool)]


def exemplars(df: Sessions, finding: Any = None, failures: FailureSpec = None, n: int = 10,
              columns: Sequence[str] = EXEMPLAR_COLUMNS) -> pd.DataFrame:
    """Failed sessions that illustrate `finding`, newest first; the latest failures without one.

    Parameters
    ----------
    df : DataFrame or SessionDataset
        A sessions frame, or a dataset (only the few failures picked are read from it).
    finding : row of rank_suspects, finding dict, or None
        A unit (`level`, `unit`) and its incident window (`window_start`/`window_end`, or the
        `window` of a finding dict). Only the unit's failures inside that window are picked
        (all of its failures when the window is missing); for a fleet-wide finding, every
        failure inside its window (see `finding_sessions`).
    failures : FailureSpec
        Which exit statuses count as failures (see `is_failure`).
    n : int
        At most this many sessions.
    columns : sequence of str
        Columns to keep, among those the frame has.

    Returns
    -------
    DataFrame
        Indexed by session id (the id to paste into a ticket).

    Raises
    ------
    TypeError, ValueError
        When `df` is not a sessions frame, the finding's level is not a column, or `n` < 0.
    """
    n = check_count(n, "n")
    if isinstance(df, SessionDataset):
        where: dict[str, Any] = {}
        if finding is not None:
            where = {"level": _field(finding, "level"), "unit": _field(finding, "unit")}
            start, end = _field(finding, "window_start"), _field(finding, "window_end")
            if start is not None and not pd.isna(start) and end is not None and not pd.isna(end):
                where.update(start=start, end=end)
        df = failed_slice(df, failing_statuses(df, failures), list(columns), n, **where)
    check_frame(df, ["exit_status", "start_time"])
    pick = df[is_failure(df["exit_status"], failures)]
    if finding is not None:
        pick = finding_sessions(pick, finding)
        start, end = _field(finding, "window_start"), _field(finding, "window_end")
        if start is not None and not pd.isna(start) and end is not None and not pd.isna(end):
            start, end = pd.Timestamp(start), pd.Timestamp(end)
            inside = (pick["start_time"] >= start) & (pick["start_time"] < end)
            pick = pick[inside.fillna(False).to_numpy(dtype=bool)]
    pick = pick.sort_values("start_time", ascending=False, kind="stable")
    return pick[[c for c in columns if c in pick.columns]].head(n)



def failed_slice(source: SessionDataset, failing: list[str], columns: list[str], limit: int,
                 level: str | None = None, unit: Any = None, start: Any = None, end: Any = None) -> pd.DataFrame:
    """From a dataset, the newest `limit` failed sessions (statuses in `failing`), of `unit` of
    `level` when given (every unit for a fleet-wide finding), started in [start, end) when
    given: what `exemplars` picks from, read without loading the dataset."""
    import ibis

    t = source.table
    where = t.exit_status.isin(failing) if failing else ibis.literal(False)
    if level is not None and level != FLEET:
        check_source(source, [level])
        where &= t[level].cast("string") == str(unit)
        columns = [*columns, level]
    if start is not None and end is not None:
        lo, hi = pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()
        where &= (t.start_time >= lo) & (t.start_time < hi)
    keep = [c for c in dict.fromkeys(["start_time", "exit_status", *columns]) if c in source.columns and c != "id"]
    return source.to_frame(columns=keep, where=where, limit=limit)


#: Messages each side must have said for a transcript to count as a conversation.
MIN_TURNS_EACH = 2


def typical_session(sessions: pd.DataFrame, turns: pd.DataFrame) -> Any:
    """The session to take as a worked example: one typical of `sessions`, with a real
    conversation, rather than the newest or the shortest.

    Among the sessions whose transcript (in `turns`) has at least `MIN_TURNS_EACH` user and
    persona messages, the one whose length is closest to the median length of those sessions
    (the newest of equals). Without any such conversation, the session closest to the median
    length of all of `sessions`.

    Parameters
    ----------
    sessions : DataFrame
        The candidates (a sessions frame, e.g. the window's failed sessions), newest first.
    turns : DataFrame
        Their transcripts (`fetch_transcripts`), possibly for only some of them.

    Returns
    -------
    session id, or None
        None when `sessions` is empty.

    Raises
    ------
    TypeError, ValueError
        When a frame lacks the needed columns.
    """
    check_frame(sessions, ["duration"])
    check_frame(turns, ["session_id", "role"])
    if sessions.empty:
        return None
    said = turns.groupby([turns["session_id"].astype("string"), turns["role"].astype("string")],
                         observed=True).size().unstack(fill_value=0)
    both = said.reindex(columns=["user", "persona"], fill_value=0).min(axis=1)
    talkers = set(both[both >= MIN_TURNS_EACH].index)
    pool = sessions[sessions.index.astype(str).isin(talkers)]
    pool = pool if len(pool) else sessions
    seconds = pool["duration"].dt.total_seconds()
    known = seconds.dropna()
    if known.empty:
        return pool.index[0]
    distance = (known - known.median()).abs()
    return distance.index[int(distance.to_numpy().argmin())]
