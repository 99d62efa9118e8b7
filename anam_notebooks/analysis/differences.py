"""`what_differs`: for failing against healthy sessions, how each attribute's values differ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data.checks import check_names
from .failures import FailureSpec
from .outcomes import Sessions, check_source, columns_of, failed_and_ended, outcome_counts
from .stats import q_values
from .suspects import DEFAULT_LEVELS, family_of

_COLUMNS = {"level": "string", "value": "string", "family": "string", "failing": "int64",
            "healthy": "int64", "failing_share": "float64", "healthy_share": "float64",
            "difference": "float64", "rate": "float64", "p_value": "float64", "q_value": "float64"}


def _moment(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    moment = pd.Timestamp(value)
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def what_differs(df: Sessions, start: Any = None, end: Any = None,
                 failures: FailureSpec = None, levels: str | Sequence[str] | None = None
                 ) -> pd.DataFrame:
    """Each attribute value's share of the failing sessions against its share of the healthy ones.

    The BubbleUp view: among ended sessions started in [start, end), a value that holds 40 %
    of the failures but 10 % of the healthy sessions (`difference` +30 points) is what sets the
    failures apart. `p_value` is a one-sided Fisher exact test that the value fails more than the
    rest of the window; `q_value` corrects it across every value of every attribute
    (Benjamini-Yekutieli). Rows come largest difference first.

    Parameters
    ----------
    df
        A sessions frame, or a `SessionDataset` (the engine counts; the same result).
    start, end
        The window (anything `pd.Timestamp` reads; naive means UTC); None for open ends.
    failures
        Which exit statuses count as failures (see `is_failure`).
    levels
        Columns to compare; None for every column of `DEFAULT_LEVELS` the frame has.

    Returns
    -------
    DataFrame
        level, value, family, failing, healthy (session counts), failing_share, healthy_share,
        difference (failing_share - healthy_share), rate, p_value, q_value.

    Raises
    ------
    ValueError
        For an unknown column or a time that cannot be read, naming it.
    """
    check_source(df, ["exit_status", "start_time"])
    have = columns_of(df)
    cols = [c for c in DEFAULT_LEVELS if c in have] if levels is None else check_names(have, levels, "levels")
    try:
        lo, hi = _moment(start), _moment(end)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start={start!r} / end={end!r}: give times such as '2024-05-01T10:00Z' "
                         f"or None ({exc})") from None
    window = (lo, hi)
    fleet = outcome_counts(df, (), window=window)
    per_level = {col: outcome_counts(df, [col], window=window) for col in cols}
    return differences_from_counts(fleet, per_level, failures, lo, hi)


def differences_from_counts(fleet: pd.DataFrame, per_level: dict[str, pd.DataFrame],
                            failures: FailureSpec, lo: pd.Timestamp | None, hi: pd.Timestamp | None
                            ) -> pd.DataFrame:
    """`what_differs`' statistics on `outcome_counts` of the window: the whole window, and
    one table per level keyed by that level."""
    failed, ended = failed_and_ended(fleet, failures)
    n = fleet["n"].to_numpy()
    n_fail, n_ok = int(n[failed].sum()), int(n[ended & ~failed].sum())
    rows = []
    for col, counts in per_level.items():
        failed, ended = failed_and_ended(counts, failures)
        counts = counts[ended]
        values = np.array(["(none)" if v is None else str(v) for v in counts[col]], dtype=object)
        names, codes = np.unique(values, return_inverse=True)
        weights = counts["n"].to_numpy()
        failing = np.bincount(codes, weights=weights * failed[ended], minlength=len(names)).astype(np.int64)
        total = np.bincount(codes, weights=weights, minlength=len(names)).astype(np.int64)
        for name, f, t in zip(names, failing, total):
            rows.append((col, name, family_of(col), int(f), int(t - f)))
    out = pd.DataFrame(rows, columns=["level", "value", "family", "failing", "healthy"])
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in _COLUMNS.items()})
    with np.errstate(divide="ignore", invalid="ignore"):
        out["failing_share"] = out["failing"] / n_fail if n_fail else np.nan
        out["healthy_share"] = out["healthy"] / n_ok if n_ok else np.nan
        out["rate"] = out["failing"] / (out["failing"] + out["healthy"])
    out["difference"] = out["failing_share"] - out["healthy_share"]
    drawn = (out["failing"] + out["healthy"]).to_numpy()
    out["p_value"] = stats.hypergeom.sf(out["failing"].to_numpy() - 1, n_fail + n_ok, n_fail, drawn)
    out["q_value"] = q_values(out["p_value"].to_numpy(), method="by")
    out = out.sort_values(["difference", "p_value"], ascending=[False, True], kind="stable")
    out.attrs.update(start=lo, end=hi, failing=n_fail, healthy=n_ok)
    return out[list(_COLUMNS)].astype(_COLUMNS).reset_index(drop=True)
