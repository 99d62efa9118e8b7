"""`SessionExplorer`: filters over a sessions frame, linked to a table, a timeline and a lookup."""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..api.source import SessionSource
from ..data.checks import check_frame
from . import html as _html
from .base import StaticRendering, show_figure, style_widget
from .colors import MISSING_LABEL, status_label
from .lookup import SessionLookup
from .plots import session_timeline
from .tables import format_frame

_ALL = "(all)"
_MISSING_VALUE = object()
_FILTERS = {"region": "engine_region", "version": "engine_version", "pod": "engine_pod",
            "persona": "persona_name"}
_TABLE_COLUMNS = ("client_label", "exit_status", "start_time", "duration", "engine_region",
                  "engine_pod", "engine_version", "persona_name")
_STEPS = ("1min", "5min", "15min", "1h", "6h", "1D", "7D", "30D")


def _time_options(start: pd.Series) -> list[tuple[str, pd.Timestamp]]:
    """Slider stops covering the sessions' start times, at most about 400 of them."""
    times = pd.to_datetime(start, utc=True).dropna()
    if times.empty:
        return []
    low, high = times.min(), times.max()
    step = next((s for s in _STEPS if (high - low) / pd.Timedelta(s) <= 400), _STEPS[-1])
    edges = pd.date_range(low.floor(step), high.floor(step) + pd.Timedelta(step), freq=step)
    return [(t.strftime("%Y-%m-%d %H:%M"), t) for t in edges]


# The static rendering (reports) samples the timeline above this many sessions.
STATIC_TIMELINE_SESSIONS = 5_000


class SessionExplorer(StaticRendering, W.VBox):
    """Filters (time range, exit statuses, region, version, pod, persona) over a sessions frame,
    linked to a table and a timeline; choosing a session opens it in an embedded lookup.

    Parameters
    ----------
    df : pandas.DataFrame
        A sessions frame (from `fetch_sessions` or `sessions_frame`).
    client : SessionSource, optional
        The client the embedded lookup reads sessions with (see `SessionLookup`); with a
        `RedactedClient` the frame is masked too, whatever it was built from.
    tz : str, optional
        IANA time zone for the times shown; UTC when None.
    by : str
        The column whose values are the timeline's lanes.
    max_rows : int
        How many matching sessions the table lists (all of them are counted).

    Raises
    ------
    TypeError
        `df` is not a DataFrame.
    ValueError
        A needed column is missing (the message lists the frame's columns), or `max_rows` < 1.
    TypeError
        When `client` is not a `SessionSource` (the message names what it lacks).
    """

    def __init__(self, df: pd.DataFrame, client: SessionSource | None = None, *, tz: str | None = None,
                 by: str = "engine_pod", max_rows: int = 200) -> None:
        check_frame(df, ["start_time", "exit_status", by])
        if max_rows < 1:
            raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
        self.session_lookup = SessionLookup(client, tz=tz)
        gate = client.redaction if client is not None else None
        df = df if gate is None else gate.sessions_frame(df)
        self.df = df
        self.tz = tz
        self.by = by
        self.max_rows = max_rows
        self._labels = df["exit_status"].astype(object).map(status_label)
        self._stops = _time_options(df["start_time"])
        self.time_range = W.SelectionRangeSlider(
            options=[label for label, _ in self._stops] or ["(no times)"],
            index=(0, max(len(self._stops) - 1, 0)), description="Start",
            disabled=len(self._stops) < 2, continuous_update=False,
            layout=W.Layout(width="48em"))
        statuses = sorted(set(self._labels))
        self.statuses = W.SelectMultiple(options=statuses, value=tuple(statuses),
                                         description="Exit status", rows=min(len(statuses), 8) or 1)
        self.dropdowns: dict[str, W.Dropdown] = {}
        for name, column in _FILTERS.items():
            options: list[tuple[str, Any]] = [(_ALL, _ALL)]
            if column in df.columns:
                values = df[column].dropna().astype(str).unique()
                options += [(v, v) for v in sorted(values)]
                if df[column].isna().any():
                    options.append((MISSING_LABEL, _MISSING_VALUE))
            self.dropdowns[name] = W.Dropdown(options=options, value=_ALL,
                                              description=name.capitalize(),
                                              disabled=column not in df.columns)
        self.region, self.version = self.dropdowns["region"], self.dropdowns["version"]
        self.pod, self.persona = self.dropdowns["pod"], self.dropdowns["persona"]
        self.summary = W.HTML()
        self.table = W.HTML()
        self.timeline_output = W.Output()
        self.select = W.Dropdown(options=[("choose a session to open…", None)],
                                 description="Open", layout=W.Layout(width="48em"))
        self.figure: go.Figure | None = None
        self.matching: pd.DataFrame = df.iloc[:0]
        for control in (self.time_range, self.statuses, *self.dropdowns.values()):
            control.observe(lambda _: self.refresh(), names="value")
        self.select.observe(self._on_select, names="value")
        super().__init__([
            style_widget(), self.time_range,
            W.HBox([self.statuses, W.VBox(list(self.dropdowns.values()))]),
            self.summary, self.table, self.timeline_output, self.select, self.session_lookup,
        ])
        self.refresh()

    def filtered(self) -> pd.DataFrame:
        """The sessions matching the current filters, newest first.

        Returns
        -------
        pandas.DataFrame
            The rows of the explorer's frame that pass every filter.
        """
        df = self.df
        mask = np.array(self._labels.isin(self.statuses.value), dtype=bool)
        if len(self._stops) >= 2:
            lo, hi = self.time_range.index
            start = pd.to_datetime(df["start_time"], utc=True)
            end = self._stops[hi][1] + (self._stops[1][1] - self._stops[0][1])
            mask &= ((start >= self._stops[lo][1]) & (start < end)).to_numpy()
        for name, column in _FILTERS.items():
            value = self.dropdowns[name].value
            if value == _ALL or column not in df.columns:
                continue
            col = df[column]
            mask &= (col.isna() if value is _MISSING_VALUE
                     else col.astype(object).eq(value).fillna(False)).to_numpy(dtype=bool)
        return df[mask].sort_values("start_time", ascending=False, na_position="last")

    def refresh(self) -> None:
        """Re-apply the filters to the summary, table, timeline and session chooser."""
        self.matching = self.filtered()
        shown = self.matching.iloc[: self.max_rows]
        statuses = self._labels.loc[self.matching.index]
        breakdown = ", ".join(f"{k} {v}" for k, v in statuses.value_counts().items())
        self.summary.value = _html.message(
            f"{len(self.matching)} of {len(self.df)} sessions match"
            + (f"; by exit status: {breakdown}" if breakdown else ""), kind="info")
        columns = [c for c in _TABLE_COLUMNS if c in self.df.columns]
        self.table.value = _html.table(format_frame(shown[columns], tz=self.tz))
        if len(shown) < len(self.matching):
            self.table.value += _html.message(
                f"table shows the newest {len(shown)} of {len(self.matching)} matching sessions; "
                "the timeline shows them all", kind="info")
        self.figure = session_timeline(self.matching, by=self.by, tz=self.tz)
        show_figure(self.timeline_output, self.figure)
        options: list[tuple[str, Any]] = [("choose a session to open…", None)]
        for sid, row in shown.iterrows():
            options.append((" · ".join([_html.format_value(row.get("start_time")),
                                        _html.format_value(row.get("client_label")),
                                        status_label(row.get("exit_status")), str(sid)]), sid))
        self.select.options = options

    def open_session(self, session_id: str) -> None:
        """Open one session in the embedded lookup.

        Parameters
        ----------
        session_id : str
            The session's UUID.
        """
        self.session_lookup.lookup(session_id)

    def _on_select(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.open_session(change["new"])

    def _repr_html_(self) -> str:
        """The current filters, table and timeline as static HTML (plotly.js not included)."""
        filters = {"start": "–".join(self.time_range.value) if self._stops else "(no times)",
                   "exit statuses": ", ".join(self.statuses.value) or "(none)"}
        filters.update({name: str(d.label) for name, d in self.dropdowns.items() if not d.disabled})
        parts = [_html.style(), _html.card("Session explorer filters", filters),
                 self.summary.value, self.table.value]
        if self.figure is not None:
            figure = self.figure
            if len(self.matching) > STATIC_TIMELINE_SESSIONS:
                # A report must stay small: keep every failure and active session, sample the
                # rest, and say so on the figure (session_timeline's max_sessions).
                figure = session_timeline(self.matching, by=self.by, tz=self.tz,
                                          max_sessions=STATIC_TIMELINE_SESSIONS)
            parts.append(_html.figure_div(figure))
        if self.session_lookup.session is not None or self.session_lookup.message.value:
            parts.append(self.session_lookup._repr_html_())
        return "".join(parts)
