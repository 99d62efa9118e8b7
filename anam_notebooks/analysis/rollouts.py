"""Rollouts seen in a window: when each engine version first served a session, and the split
point a before/after comparison uses by default (the newest rollout)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from ..data.checks import check_frame, check_freq
from ..data.timespan import parse_time_bound


def rollouts(df: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """Engine versions that first served a session inside the window, oldest rollout first.

    A version already serving in the first `freq` of the data was most likely running before
    the window opened, so it is not a rollout seen here.

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
    step = check_freq(freq)
    known = df.dropna(subset=["engine_version", "start_time"])
    empty = pd.DataFrame({"first_seen": pd.Series(dtype="datetime64[ns, UTC]"),
                          "sessions": pd.Series(dtype="int64")},
                         index=pd.Index([], dtype="string", name="engine_version"))
    if known.empty:
        return empty
    versions = known["engine_version"].astype("string")
    grouped = known.groupby(versions, observed=True)["start_time"]
    out = pd.DataFrame({"first_seen": grouped.min(), "sessions": grouped.size().astype("int64")})
    out.index = out.index.astype("string").rename("engine_version")
    inside = out[out["first_seen"] > df["start_time"].min() + pd.Timedelta(step)]
    return inside.sort_values("first_seen") if len(inside) else empty


def latest_rollout(df: pd.DataFrame, freq: str = "1h") -> pd.Timestamp | None:
    """When the newest rollout in the window first served a session, or None if there was none.

    Parameters
    ----------
    df : DataFrame
        A sessions frame.
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
    found = rollouts(df, freq)
    return found["first_seen"].iloc[-1] if len(found) else None


def split_time(split: Any, df: pd.DataFrame, freq: str = "1h", *,
               now: datetime | None = None) -> pd.Timestamp | None:
    """The moment a before/after comparison splits at, from a notebook's `split` parameter.

    Parameters
    ----------
    split : None, datetime or str
        None for the newest rollout in the window; otherwise any form `since` accepts: a
        datetime (naive means UTC), an ISO-8601 string, or a span before now such as "6h".
    df : DataFrame
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
