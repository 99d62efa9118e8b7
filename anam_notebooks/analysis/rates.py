"""Failure rates per group, with Wilson intervals (see `analysis` for how to read them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.checks import check_names
from .failures import FailureSpec
from .outcomes import Sessions, check_source, columns_of, failed_and_ended, outcome_counts
from .stats import wilson_interval


def failure_rates(df: Sessions, by: str | Sequence[str] = "engine_pod",
                  failures: FailureSpec = None) -> pd.DataFrame:
    """Failure rate per group of `by` (one column or several), with a 95 % Wilson interval.

    Parameters
    ----------
    df : pandas.DataFrame or SessionDataset
        A sessions frame, or a dataset (the engine counts; the same result as its frame).
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
        `df` is neither a DataFrame nor a SessionDataset, or `failures` is not usable.

    Columns: sessions (ended), failures, rate, ci_low, ci_high, active (left out of the rate).
    Indexed by the group values (missing values form their own group, last), in sorted order.
    """
    check_source(df, ["exit_status"])
    cols = check_names(columns_of(df), by, "by")
    return rates_from_counts(outcome_counts(df, cols), cols, failures)


def rates_from_counts(counts: pd.DataFrame, by: list[str], failures: FailureSpec = None) -> pd.DataFrame:
    """`failure_rates` on a table of `outcome_counts` grouped by `by`: the statistics step."""
    failed, ended = failed_and_ended(counts, failures)
    n = counts["n"].to_numpy()
    cells = pd.DataFrame({"sessions": n * ended, "failures": n * failed, "active": n * ~ended})
    keys = [counts[c].rename(c) for c in by]
    grouped = cells.groupby(keys if len(keys) > 1 else keys[0], dropna=False, sort=True).sum()
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
