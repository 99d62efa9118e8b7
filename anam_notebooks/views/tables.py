"""Tables a manager can read: percentages, short p/q-values (never a bare 0), seconds with their
unit, human durations, times to the second with the zone named once in the header, blanks for
missing values, and no index column unless the index means something (a session id, a pod name).

Every table of every report goes through `show_table`, so one rule reads the same everywhere.
A p- or q-value of a group that differs the good way (a latency table's negative `shift`: it
answers faster than the rest) is shown as "faster", not as a number a reader would take for a
finding.

`format_frame` does the formatting (text, testable on hand-built frames); `show_table` wraps it
in an object Jupyter and nbconvert display as an escaped HTML table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Collection
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from . import html as _html

#: Columns holding a share of sessions (0..1), shown as percentages.
PERCENT_COLUMNS = frozenset({
    "rate", "baseline", "ci_low", "ci_high", "window_rate", "window_baseline", "before_share",
    "after_share", "share", "failure_rate", "pod_rate", "fleet_rate", "overlap_rate",
    "interruption_rate", "failing_share", "healthy_share"})
#: Columns holding seconds (latency), shown as "1.85 s"; `SIGNED_SECONDS` with a sign.
SECONDS_COLUMNS = frozenset({"p50", "p50_low", "p50_high", "p90", "rest_p50", "median_gap",
                             "longest_gap", "response_gap"})
SIGNED_SECONDS = frozenset({"shift"})
#: Columns holding a difference of two shares, shown in percentage points.
POINTS_COLUMNS = frozenset({"difference"})
#: Columns holding p- or q-values, shown in short scientific form.
PVALUE_COLUMNS = frozenset({"p_value", "q_value", "p_within", "q_within"})
#: Columns holding a ratio, shown as "2.3×".
RATIO_COLUMNS = frozenset({"lift"})


def format_percent(value: Any) -> str:
    """A share 0..1 as "24.1 %" (two decimals under 1 %, blank when missing)."""
    if _html.is_missing(value):
        return ""
    share = 100 * float(value)
    return f"{share:.2f} %" if 0 < abs(share) < 1 else f"{share:.1f} %"


def format_points(value: Any) -> str:
    """A difference of shares as "+3.2 pp" (percentage points)."""
    if _html.is_missing(value):
        return ""
    return f"{100 * float(value):+.1f} pp"


def format_pvalue(value: Any) -> str:
    """A p- or q-value in short form: "0.042", "1.3e-78", "< 1e-300" for an underflow to 0."""
    if _html.is_missing(value):
        return ""
    number = float(value)
    if number == 0:
        return "< 1e-300"
    if number >= 0.001:
        return f"{number:.2g}"
    mantissa, exponent = f"{number:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_seconds(value: Any, signed: bool = False) -> str:
    """Seconds as "1.85 s" ("+0.93 s" when `signed`), blank when missing."""
    if _html.is_missing(value):
        return ""
    return f"{float(value):+.2f} s" if signed else f"{float(value):.2f} s"


def format_ratio(value: Any) -> str:
    """A ratio as "2.3×" (blank when missing, "∞" when unbounded)."""
    if _html.is_missing(value):
        return ""
    number = float(value)
    return "∞" if math.isinf(number) else f"{number:.1f}×"


def _zone(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"tz={tz!r} is not a time zone name such as 'Europe/London' or 'UTC'") from exc


def _time_formatter(zone: ZoneInfo) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if _html.is_missing(value):
            return ""
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return f"{stamp.tz_convert(zone):%Y-%m-%d %H:%M:%S}"
    return fmt


_UTC = ZoneInfo("UTC")


def _plain(value: Any, zone: ZoneInfo = _UTC) -> str:
    """One cell of a column with no rule of its own (mixed objects format value by value)."""
    if _html.is_missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return f"{number:,.0f}" if number.is_integer() and abs(number) >= 1000 else f"{number:.3g}"
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return _html.format_duration(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return _time_formatter(zone)(value) + f" {zone.key}"
    return str(value)


def _column_formatter(name: str, series: pd.Series, zone: ZoneInfo, percent: Collection[str]
                      ) -> tuple[str, Callable[[Any], str]]:
    """(header, formatter) for one column."""
    label = str(name)
    if label in percent:
        return label, format_percent
    if label in POINTS_COLUMNS:
        return label, format_points
    if label in PVALUE_COLUMNS:
        return label, format_pvalue
    if label in RATIO_COLUMNS:
        return label, format_ratio
    if label in SECONDS_COLUMNS:
        return label, format_seconds
    if label in SIGNED_SECONDS:
        return label, lambda v: format_seconds(v, signed=True)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return f"{label} ({zone.key})", _time_formatter(zone)
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        return label, lambda v: "" if _html.is_missing(v) else _html.format_duration(v)
    return label, lambda v: _plain(v, zone)


def _faster(frame: pd.DataFrame) -> np.ndarray:
    """Rows of a latency table whose group answers faster than the rest (negative `shift`)."""
    if "shift" not in frame.columns or not pd.api.types.is_numeric_dtype(frame["shift"].dtype):
        return np.zeros(len(frame), dtype=bool)
    return (pd.to_numeric(frame["shift"], errors="coerce") < 0).fillna(False).to_numpy(dtype=bool)


def meaningful_index(frame: pd.DataFrame) -> bool:
    """False for a default 0..n-1 index (a pandas artefact, not data)."""
    index = frame.index
    if index.name is not None or isinstance(index, pd.MultiIndex):
        return True
    return not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1)


def format_frame(frame: pd.DataFrame, *, tz: str | None = None,
                 percent: Collection[str] | None = None) -> pd.DataFrame:
    """Every cell of `frame` as display text (see the module docstring); the index is kept.

    Parameters
    ----------
    frame : DataFrame
        Any frame (sessions, rates, suspects, a shift table...).
    tz : str, optional
        Time zone the times are shown in, named once in each time column's header (default UTC).
    percent : collection of str, optional
        Columns holding shares 0..1 (default `PERCENT_COLUMNS`).

    Returns
    -------
    DataFrame
        Same shape, string cells, time headers renamed "start_time (UTC)"; missing cells blank.

    Raises
    ------
    TypeError, ValueError
        When `frame` is not a DataFrame, or `tz` is not a time zone name.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a DataFrame, got {type(frame).__name__}")
    zone = _zone(tz)
    chosen = PERCENT_COLUMNS if percent is None else frozenset(percent)
    out = {}
    faster = _faster(frame)
    for name in frame.columns:
        header, fmt = _column_formatter(name, frame[name], zone, chosen)
        cells = [fmt(v) for v in frame[name].astype(object)]
        if str(name) in PVALUE_COLUMNS and faster.any():
            cells = ["faster" if quick and cell else cell for cell, quick in zip(cells, faster)]
        out[header] = cells
    index = frame.index
    if isinstance(index, pd.DatetimeIndex):
        index = pd.Index([_time_formatter(zone)(v) for v in index],
                         name=f"{index.name or 'time'} ({zone.key})")
    else:
        index = pd.Index([_plain(v) for v in index], name=index.name) \
            if not isinstance(index, pd.MultiIndex) else pd.Index(
                [" / ".join(_plain(p) for p in v) for v in index],
                name=" / ".join(str(n or "") for n in index.names))
    return pd.DataFrame(out, index=index)


class Table:
    """A frame displayed readably: escaped HTML in Jupyter and reports, aligned text elsewhere.

    Built by `show_table`; `html` is the markup, `frame` the formatted text cells.
    """

    def __init__(self, frame: pd.DataFrame, *, tz: str | None = None, max_rows: int | None = 50,
                 index: bool | None = None, percent: Collection[str] | None = None,
                 caption: str | None = None) -> None:
        self.source = frame
        self.frame = format_frame(frame, tz=tz, percent=percent)
        self.index = meaningful_index(frame) if index is None else bool(index)
        self.max_rows = max_rows
        self.caption = caption

    @property
    def html(self) -> str:
        """The escaped HTML table (with the stylesheet), as `_repr_html_` gives it."""
        return self._repr_html_()

    def _repr_html_(self) -> str:
        if self.frame.empty and not len(self.frame.columns):
            return _html.style() + _html.message("no rows", kind="info")
        shown = self.frame if self.index else self.frame.reset_index(drop=True)
        body = _html.table(shown, index=self.index, max_rows=self.max_rows, caption=self.caption)
        if self.frame.empty:
            body += _html.message("no rows", kind="info")
        return _html.style() + body

    def __repr__(self) -> str:
        shown = self.frame.head(self.max_rows) if self.max_rows is not None else self.frame
        return shown.to_string(index=self.index) if len(shown.columns) else "(no columns)"


def show_table(frame: pd.DataFrame, *, tz: str | None = None, max_rows: int | None = 50,
               index: bool | None = None, percent: Collection[str] | None = None,
               caption: str | None = None) -> Table:
    """`frame` as a readable, escaped table for a notebook or report (end a cell with it).

    Parameters
    ----------
    frame : DataFrame
        What to show.
    tz : str, optional
        Display time zone for time columns (default UTC), named once in each header.
    max_rows : int or None
        Rows shown (a note says how many were left out); None for all.
    index : bool, optional
        Show the index; by default only when it means something (not 0..n-1).
    percent : collection of str, optional
        Columns holding shares 0..1, shown as percentages (default `PERCENT_COLUMNS`).
    caption : str, optional
        A caption above the table.

    Returns
    -------
    Table
        Displays as HTML in Jupyter; `repr` gives aligned text.

    Raises
    ------
    TypeError, ValueError
        When `frame` is not a DataFrame, or `tz` is not a time zone name.
    """
    return Table(frame, tz=tz, max_rows=max_rows, index=index, percent=percent, caption=caption)
