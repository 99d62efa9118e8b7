"""Failure rates per group, with Wilson intervals (see `analysis` for how to read them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.checks import check_columns, check_frame, ended_mask
from .failures import FailureSpec, is_failure
from .stats import wilson_interval


def failure_rates(df: pd.DataFrame, by: str | Sequence[str] = "engine_pod",
                  failures: FailureSpec = None) -> pd.DataFrame:
    """Failure rate per group of `by` (one column or several), with a 95 % Wilson interval.

    Parameters
    ----------
    df : pandas.DataFrame
        A sessions frame.
    by : str or sequence of str
        The column(s) to group by, e.g. "engine_pod" or ["engine_region", "engine_version"].
    failures : collection of str, callable or None
        Which exit statuses count as failures (see `is_failure`).

    Returns
    -------
    pandas.DataFrame
        Per group: sessions (ended), failures, rate, ci_low, ci_high, active.

    Raises
    ------
    ValueError
        `by` names a column the frame lacks (the message lists them), or repeats one.
    TypeError
        `df` is not a DataFrame, or `failures` is not usable.

    Columns: sessions (ended), failures, rate, ci_low, ci_high, active (left out of the rate).
    Indexed by the group values (missing values form their own group), in group order.
    """
    check_frame(df, ["exit_status"])
    cols = check_columns(df, by, "by")
    ended = ended_mask(df)
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
