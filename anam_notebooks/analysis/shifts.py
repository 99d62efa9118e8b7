"""Did the exit-status mix change between two sets of sessions, and which statuses moved?"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data.checks import ended_mask
from ..data.timespan import parse_time_bound
from .failures import FailureSpec, is_failure
from .outcomes import Sessions, check_source, columns_of, outcome_counts
from .stats import monte_carlo_chi2, q_values

_SHIFT_COLUMNS = {"before": "int64", "after": "int64", "before_share": "float64",
                  "after_share": "float64", "difference": "float64", "p_value": "float64",
                  "q_value": "float64", "failure": "bool"}


def _side_counts(source: Sessions, split: Any, before: Any, after: Any
                 ) -> tuple[pd.DataFrame, str]:
    """`outcome_counts` with an `after` key (True after, False before, None neither) and a
    description of the split."""
    if isinstance(split, (pd.Series, np.ndarray, list)) and not isinstance(split, str):
        if not isinstance(source, pd.DataFrame):
            raise TypeError("a boolean-mask split needs a sessions DataFrame (a mask has one value "
                            "per row of a frame); with a dataset, split on a time or a column")
        mask = split.reindex(source.index) if isinstance(split, pd.Series) else np.asarray(split)
        if len(mask) != len(source):
            raise ValueError(f"a boolean split needs one value per session ({len(source)}), got {len(mask)}")
        values = pd.Series(np.asarray(mask, dtype=object))
        if not values.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all():
            raise ValueError("a mask split must hold only True (after) / False (before) values")
        side = pd.array(values.where(values.notna(), None).to_numpy(), dtype="boolean")
        sides = pd.DataFrame({"after": side, "exit_status": source["exit_status"].array,
                              "is_active": ~ended_mask(source)})
        return outcome_counts(sides, ["after"]), "boolean mask (False = before, True = after)"
    if isinstance(split, str) and split in columns_of(source):
        counts = outcome_counts(source, [split])
        values = counts[split]
        held = list(dict.fromkeys(str(v) for v in values.dropna()))
        if before is None or after is None:
            raise ValueError(f"split on column {split!r} needs before= and after= values; "
                             f"it holds: {', '.join(held[:20])}")
        chosen = []
        for name, wanted in (("before", before), ("after", after)):
            wanted = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Collection) else list(wanted)
            chosen.append(values.isin(wanted).to_numpy())
            if not chosen[-1].any():
                raise ValueError(f"{name}={wanted!r} matches no session in column {split!r}; "
                                 f"it holds: {', '.join(held[:20])}")
        side = np.full(len(counts), None, dtype=object)
        side[chosen[1] & ~chosen[0]] = True
        side[chosen[0] & ~chosen[1]] = False
        counts = counts.drop(columns=[split]).assign(after=side)
        return counts, f"{split}: {before!r} → {after!r}"
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
        check_source(source, ["start_time"])
        return outcome_counts(source, (), split_at=when), f"start_time at {when.isoformat()}"
    raise TypeError(f"split={split!r} must be a timestamp, a column name or a boolean mask")


def exit_status_shift(df: Sessions, split: Any, before: Any = None, after: Any = None,
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
    df : pandas.DataFrame or SessionDataset
        A sessions frame, or a dataset (the engine counts; the same result as its frame).
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
        `split` has an unusable type, `df` is neither a DataFrame nor a SessionDataset, or a
        boolean mask is given with a dataset.
    """
    check_source(df, ["exit_status"])
    counts, described = _side_counts(df, split, before, after)
    return shift_from_counts(counts, described, failures)


def shift_from_counts(counts: pd.DataFrame, described: str, failures: FailureSpec = None) -> pd.DataFrame:
    """`exit_status_shift`'s statistics on `outcome_counts` carrying an `after` side key."""
    n = counts["n"].to_numpy()
    ended = counts["ended"].to_numpy(dtype=bool)
    has_status = counts["exit_status"].notna().to_numpy()
    side = counts["after"]
    is_after = (side == True).to_numpy(dtype=bool)  # noqa: E712 - element-wise on object values
    is_before = (side == False).to_numpy(dtype=bool)  # noqa: E712
    attrs: dict[str, Any] = {"split": described,
                             "missing_status": int(n[ended & ~has_status].sum())}
    use = ended & has_status
    b_counts = _per_status(counts[use & is_before])
    a_counts = _per_status(counts[use & is_after])
    nb, na = int(b_counts.sum()), int(a_counts.sum())
    attrs.update(before_sessions=nb, after_sessions=na)
    if not nb and not na:
        attrs.update(chi2=np.nan, dof=0, p_value=np.nan, method="none")
        empty = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _SHIFT_COLUMNS.items()},
                             index=pd.Index([], dtype="string", name="exit_status"))
        empty.attrs.update(attrs)
        return empty
    for name, total in (("before", nb), ("after", na)):
        if not total:
            raise ValueError(f"split {described} leaves no ended session {name} it "
                             f"({nb} before, {na} after); choose a split inside the data")
    # Most common first, ties by name: the same order whichever engine counted.
    statuses = _status_order(b_counts, a_counts)
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


def _per_status(rows: pd.DataFrame) -> pd.Series:
    """Sessions per exit status (str) of count rows."""
    if rows.empty:
        return pd.Series(dtype=np.int64)
    return rows.groupby(rows["exit_status"].map(str))["n"].sum().astype(np.int64)


def _status_order(before: pd.Series, after: pd.Series) -> list[str]:
    """Statuses by sessions before (most first), then those only after; ties by name."""
    order = sorted(before.index, key=lambda k: (-int(before[k]), k))
    return order + sorted((k for k in after.index if k not in before.index), key=lambda k: (-int(after[k]), k))
