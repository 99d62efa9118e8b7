"""Checks every layer applies to the frames and arguments it is given, with errors that name
the bad value and what would be valid; and the one definition of an ended session."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset


def check_frame(df: object, needs: Sequence[str]) -> pd.DataFrame:
    """`df` itself when it is a DataFrame holding every column in `needs`; else a clear error."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a sessions DataFrame (from sessions_frame), got {type(df).__name__}")
    missing = [c for c in needs if c not in df.columns]
    if missing:
        have = ", ".join(repr(c) for c in df.columns) or "no columns at all"
        named = ", ".join(repr(c) for c in missing)
        raise ValueError(f"column {named} is not in the frame; valid columns: {have} "
                         "(a sessions frame comes from sessions_frame or fetch_sessions)")
    return df


def check_columns(df: pd.DataFrame, names: str | Sequence[str], arg: str) -> list[str]:
    """The column names given as `arg` (one or several), each checked to exist, none repeated."""
    return check_names(list(df.columns), names, arg)


def check_names(columns: Sequence[str], names: str | Sequence[str], arg: str) -> list[str]:
    """`check_columns` against a list of column names (a frame's, or a dataset's)."""
    cols = [names] if isinstance(names, str) else list(names)
    if not cols:
        raise ValueError(f"{arg} is empty: name at least one column, e.g. {arg}='engine_pod'")
    unknown = [c for c in cols if c not in columns]
    if unknown:
        raise ValueError(f"{arg} names unknown column(s) {unknown}; valid columns: "
                         f"{', '.join(map(str, columns))}")
    if len(set(cols)) != len(cols):
        raise ValueError(f"{arg}={cols!r} repeats a column")
    return cols


def check_freq(freq: str | pd.Timedelta) -> pd.Timedelta:
    """A fixed bucket size ('15min', '1h', '1D') as a Timedelta; calendar offsets are refused."""
    try:
        offset = to_offset(freq)
        step = pd.Timedelta(offset)
    except (ValueError, TypeError):
        raise ValueError(f"freq={freq!r} is not a fixed-length pandas offset; use e.g. "
                         "'15min', '1h', '6h' or '1D'") from None
    if step <= pd.Timedelta(0):
        raise ValueError(f"freq={freq!r} must be a positive duration such as '1h'")
    return step


def check_count(value: object, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{arg}={value!r} must be a whole number ≥ 0")
    return int(value)


def ended_mask(df: pd.DataFrame) -> np.ndarray:
    """Sessions with an outcome: not `is_active`; in a frame without that column, those with an
    end time or an exit status. Active sessions have no outcome yet and count in no rate."""
    if "is_active" in df.columns:
        return ~df["is_active"].fillna(False).to_numpy(dtype=bool)
    ended = np.zeros(len(df), dtype=bool)
    for column in ("end_time", "exit_status"):
        if column in df.columns:
            ended |= df[column].notna().to_numpy()
    return ended


def active_mask(df: pd.DataFrame) -> np.ndarray:
    """Sessions still running: the complement of `ended_mask`."""
    return ~ended_mask(df)
