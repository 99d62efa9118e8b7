"""Did the exit-status mix change between two sets of sessions, and which statuses moved?"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data.checks import check_frame, ended_mask
from ..data.timespan import parse_time_bound
from .failures import FailureSpec, is_failure
from .stats import monte_carlo_chi2, q_values

_SHIFT_COLUMNS = {"before": "int64", "after": "int64", "before_share": "float64",
                  "after_share": "float64", "difference": "float64", "p_value": "float64",
                  "q_value": "float64", "failure": "bool"}


def _split_sides(df: pd.DataFrame, split: Any, before: Any, after: Any
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """Boolean masks (before, after) and a description of the split."""
    if isinstance(split, (pd.Series, np.ndarray, list)) and not isinstance(split, str):
        mask = split.reindex(df.index) if isinstance(split, pd.Series) else np.asarray(split)
        if len(mask) != len(df):
            raise ValueError(f"a boolean split needs one value per session ({len(df)}), got {len(mask)}")
        values = pd.Series(np.asarray(mask, dtype=object))
        if not values.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all():
            raise ValueError("a mask split must hold only True (after) / False (before) values")
        after_mask = (values == True).to_numpy()  # noqa: E712 - element-wise on object values
        before_mask = (values == False).to_numpy()  # noqa: E712
        return before_mask, after_mask, "boolean mask (False = before, True = after)"
    if isinstance(split, str) and split in df.columns:
        if before is None or after is None:
            shown = ", ".join(map(str, pd.Series(df[split]).dropna().unique()[:20]))
            raise ValueError(f"split on column {split!r} needs before= and after= values; "
                             f"it holds: {shown}")
        column = df[split].astype(object)
        sides = []
        for name, chosen in (("before", before), ("after", after)):
            chosen = [chosen] if isinstance(chosen, str) or not isinstance(chosen, Collection) else list(chosen)
            sides.append(column.isin(chosen).to_numpy())
            if not sides[-1].any():
                shown = ", ".join(map(str, column.dropna().unique()[:20]))
                raise ValueError(f"{name}={chosen!r} matches no session in column {split!r}; "
                                 f"it holds: {shown}")
        return sides[0], sides[1], f"{split}: {before!r} → {after!r}"
    if isinstance(split, (str, datetime, pd.Timestamp, np.datetime64)):
        try:
            # The forms `since` takes: a datetime, an ISO time, or a span before now ("6h").
            when = parse_time_bound(split if isinstance(split, str) else pd.Timestamp(split),
                                    name="split")
        except (ValueError, TypeError):
            when = None
        if when is None or pd.isna(when):
            raise ValueError(
                f"split={split!r} is neither a column of the frame nor a timestamp; pass a time "
                "such as '2024-05-03 12:00' or a span before now such as '6h', a column name "
                "with before=/after=, or a boolean mask")
        check_frame(df, ["start_time"])
        start = pd.to_datetime(df["start_time"], utc=True, errors="coerce")
        return (start < when).to_numpy(), (start >= when).to_numpy(), f"start_time at {when.isoformat()}"
    raise TypeError(f"split={split!r} must be a timestamp, a column name or a boolean mask")


def exit_status_shift(df: pd.DataFrame, split: Any, before: Any = None, after: Any = None,
                      failures: FailureSpec = None) -> pd.DataFrame:
    """Did the exit-status mix change between two sets of ended sessions, and which statuses moved?

    `split` is a time in any form `since` takes (a datetime or ISO string, naive meaning UTC, or
    a span before now such as "6h"; sessions starting before vs at/after it), a column
    name with `before=`/`after=` values (e.g. "engine_version", before="v5.0.3", after="v5.1.0"),
    or a boolean mask (True = after). One row per status (unknown statuses included): counts,
    shares, difference (after − before share), and a per-status Fisher exact p/q-value.
    `df.attrs` holds the overall test: chi2, dof, p_value and method (chi-square, or a seeded
    Monte Carlo exact test when some expected count is under 5).

    Parameters
    ----------
    df : pandas.DataFrame
        A sessions frame.
    split : datetime, str, column name or boolean mask
        Where "before" ends and "after" begins (see above).
    before, after : value or collection of values, optional
        With a column `split`: the values on each side (e.g. before="v5.0.3").
    failures : collection of str, callable or None
        Which statuses count as failures (marks the `failure` column; see `is_failure`).

    Returns
    -------
    pandas.DataFrame
        One row per exit status, most changed first; the overall test in `attrs`.

    Raises
    ------
    ValueError
        `split` is neither a time, a column nor a mask of the frame's length; a column split
        lacks `before`/`after` or they match no session; or one side holds no ended session.
    TypeError
        `split` has an unusable type, or `df` is not a DataFrame.
    """
    check_frame(df, ["exit_status"])
    before_mask, after_mask, described = _split_sides(df, split, before, after)
    ended = ended_mask(df)
    status = df["exit_status"]
    has_status = status.notna().to_numpy()
    attrs: dict[str, Any] = {"split": described,
                             "missing_status": int((ended & ~has_status).sum())}
    use = ended & has_status
    b_status = status[use & before_mask & ~after_mask].astype(object)
    a_status = status[use & after_mask & ~before_mask].astype(object)
    attrs.update(before_sessions=len(b_status), after_sessions=len(a_status))
    if not len(df) or not (use & (before_mask | after_mask)).any():
        attrs.update(chi2=np.nan, dof=0, p_value=np.nan, method="none")
        empty = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _SHIFT_COLUMNS.items()},
                             index=pd.Index([], dtype="string", name="exit_status"))
        empty.attrs.update(attrs)
        return empty
    for name, side in (("before", b_status), ("after", a_status)):
        if not len(side):
            raise ValueError(f"split {described} leaves no ended session {name} it "
                             f"({len(b_status)} before, {len(a_status)} after); choose a split "
                             "inside the data")
    b_counts, a_counts = b_status.value_counts(), a_status.value_counts()
    statuses = list(dict.fromkeys([*b_counts.index, *a_counts.index]))
    nb, na = len(b_status), len(a_status)
    b = np.array([int(b_counts.get(k, 0)) for k in statuses], dtype=np.int64)
    a = np.array([int(a_counts.get(k, 0)) for k in statuses], dtype=np.int64)
    table = np.vstack([b, a])
    if len(statuses) < 2:
        chi2, p, method = 0.0, 1.0, "one status only"
    else:
        chi2, p_asym, dof, expected = stats.chi2_contingency(table, correction=False)
        if expected.min() < 5:
            p, method = monte_carlo_chi2(table), "monte-carlo exact (10000 draws)"
        else:
            p, method = float(p_asym), "chi-square"
    per_status = np.array([stats.fisher_exact([[b[k], nb - b[k]], [a[k], na - a[k]]])[1]
                           for k in range(len(statuses))])
    out = pd.DataFrame({
        "before": b, "after": a, "before_share": b / nb, "after_share": a / na,
        "difference": a / na - b / nb, "p_value": per_status,
        "q_value": q_values(per_status), "failure": is_failure(statuses, failures),
    }, index=pd.Index([str(k) for k in statuses], dtype="string", name="exit_status"))
    out = out.iloc[np.lexsort((-np.abs(out["difference"].to_numpy()), out["p_value"].to_numpy()))]
    attrs.update(chi2=float(chi2), dof=int(len(statuses) - 1), p_value=float(p), method=method)
    out.attrs.update(attrs)
    return out
