"""Rollouts seen in a window: when each engine version first served a session, and the split
point a before/after comparison uses by default (the newest rollout)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from ..data.checks import check_frame, check_freq
from ..data.timespan import parse_time_bound
from .outcomes import Sessions, check_source, first_seen, window_opened


def rolled_out(source: Sessions, freq: str = "1h") -> pd.Series:
    """When each engine version that rolled out inside the window first served a session.

    The one definition of a rollout, for `rollouts` and the figures' rollout lines alike: a
    version already serving within `freq` of the window's first session was most likely
    running before the window opened, so it is not a rollout seen here.

    Parameters
    ----------
    source : DataFrame or SessionDataset
        Sessions with `engine_version` and `start_time` (a dataset counts in its engine).
    freq : str
        Grace period after the first session (a pandas frequency such as "1h").

    Returns
    -------
    Series
        First start (UTC) by version (as text), oldest rollout first.

    Raises
    ------
    TypeError, ValueError
        When `source` is neither a frame nor a dataset with those columns, or `freq` is not
        a frequency.
    """
    check_source(source, ["engine_version", "start_time"])
    step = check_freq(freq)
    first = first_seen(source, "engine_version")
    opened = window_opened(source)
    if first.empty or opened is None:
        return first.iloc[:0]
    return first[first > opened + pd.Timedelta(step)].sort_values(kind="stable")


def rollouts(df: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """Engine versions that first served a session inside the window, oldest rollout first
    (the definition is `rolled_out`'s).

    Parameters
    ----------
    df : DataFrame
        A sessions frame with `engine_version` and `start_time`.
    freq : str
        Grace period after the first session (a pandas frequency such as "1h").

    Returns
    -------
    DataFrame
        Index `engine_version`; columns `first_seen` (UTC) and `sessions` (how many it served).

    Raises
    ------
    TypeError, ValueError
        When `df` is not a sessions frame or `freq` is not a frequency.
    """
    check_frame(df, ["engine_version", "start_time"])
    inside = rolled_out(df, freq)
    known = df.dropna(subset=["engine_version", "start_time"])
    served = known.groupby(known["engine_version"].astype(object).map(str), observed=True).size()
    index = pd.Index(inside.index, dtype="string", name="engine_version")
    first = pd.Series(inside.astype(df["start_time"].dtype).array, index=index)
    return pd.DataFrame({"first_seen": first,
                         "sessions": pd.Series(served.reindex(inside.index).to_numpy(dtype="int64"), index=index)})


def latest_rollout(df: Sessions, freq: str = "1h") -> pd.Timestamp | None:
    """When the newest rollout in the window first served a session, or None if there was none.

    Parameters
    ----------
    df : DataFrame or SessionDataset
        The sessions (a dataset counts in its engine).
    freq : str
        As for `rollouts`.

    Returns
    -------
    Timestamp or None

    Raises
    ------
    TypeError, ValueError
        As for `rollouts`.
    """
    found = rolled_out(df, freq)
    return pd.Timestamp(found.iloc[-1]) if len(found) else None


def split_time(split: Any, df: Sessions, freq: str = "1h", *,
               now: datetime | None = None) -> pd.Timestamp | None:
    """The moment a before/after comparison splits at, from a notebook's `split` parameter.

    Parameters
    ----------
    split : None, datetime or str
        None for the newest rollout in the window; otherwise any form `since` accepts: a
        datetime (naive means UTC), an ISO-8601 string, or a span before now such as "6h".
    df : DataFrame or SessionDataset
        The sessions the rollouts are looked for in (used only when `split` is None).
    freq : str
        As for `rollouts`.
    now : datetime, optional
        What a span counts back from (default: now).

    Returns
    -------
    Timestamp or None
        UTC; None when `split` is None and no version was rolled out inside the window.

    Raises
    ------
    ValueError
        Naming the value when `split` is not a time in any accepted form.
    """
    if split is None:
        return latest_rollout(df, freq)
    return parse_time_bound(split, name="split", now=now)
