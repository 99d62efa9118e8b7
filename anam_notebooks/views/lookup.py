"""ipywidgets UIs for investigations: `SessionLookup` (one session) and `SessionExplorer` (a frame).

Both keep their child widgets as attributes and their latest figures/HTML readable, so they can be
driven without a browser, and both render statically (`_repr_html_`) so an executed notebook or
report never shows a blank widget. Figures go into an `Output` as the plotly mimetype, which
JupyterLab renders offline with plotly's bundled extension (FigureWidget would need anywidget).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from . import _html
from ._colors import ACTIVE_LABEL, MISSING_LABEL, status_color, status_label
from ._errors import (
    AnamAPIError,
    AnamConnectionError,
    AnamError,
    AuthenticationError,
    ConfigurationError,
    InvalidSessionId,
    NotFoundError,
)
from .frames import sessions_frame, transcript_frame
from .plots import session_detail, session_timeline

__all__ = ["SessionLookup", "SessionExplorer", "redact"]

REDACTED = "[REDACTED]"
_SECRET_WORDS = frozenset({"secret", "secrets", "token", "tokens", "password", "passwd", "pwd",
                           "credential", "credentials", "encrypted", "apikey", "passphrase"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ID_ATTEMPT = re.compile(r"[0-9a-fA-F]{32}|(?=.*-)[0-9a-fA-F-]{16,}|\{.*\}|urn:uuid:.*|https?://.*",
                         re.IGNORECASE)


# ---------------------------------------------------------------- shared helpers

def _is_secret_key(key: object) -> bool:
    """A config key that names a secret: any secret word in it, or a name ending in key/keys."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", words) if t]
    return bool(tokens) and (bool(_SECRET_WORDS.intersection(tokens)) or tokens[-1] in ("key", "keys"))


def redact(value: Any) -> Any:
    """A copy of a persona config with every secret-looking field replaced by `[REDACTED]`."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_secret_key(k) and v is not None else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _show_figure(output: W.Output, fig: go.Figure | None) -> None:
    """Put a figure in an Output as the plotly mimetype (no kernel needed, no CDN)."""
    if fig is None:
        output.outputs = ()
        return
    spec = json.loads(pio.to_json(fig, validate=False))
    spec["config"] = {"displaylogo": False}
    output.outputs = ({"output_type": "display_data", "metadata": {},
                       "data": {"application/vnd.plotly.v1+json": spec,
                                "text/plain": f"<Figure: {fig.layout.title.text or ''}>"}},)


def _style_widget() -> W.HTML:
    """The cards', tables' and messages' stylesheet for the live view (a hidden `<style>`):
    without it JupyterLab shows an inline error as plain text and a card without its border."""
    return W.HTML(_html.style(), layout=W.Layout(display="none"))


def _error_text(exc: BaseException) -> str:
    """What the person reading the notebook should know about a failure, without a traceback."""
    if isinstance(exc, InvalidSessionId):
        return str(exc)
    if isinstance(exc, NotFoundError):
        return f"Not found (404): {exc}"
    if isinstance(exc, AuthenticationError):
        return ("The API refused the API key (401): check ANAM_API_KEY or the key given to "
                "the client.")
    if isinstance(exc, AnamConnectionError):
        return f"Could not reach the Anam API: {exc}"
    if isinstance(exc, AnamAPIError):
        return f"The API answered {exc.status_code}: {exc}"
    if isinstance(exc, ConfigurationError):
        return f"The client is not configured: {exc}"
    if isinstance(exc, AnamError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}"


class _StaticRendering:
    """The live widget view plus its static HTML (`_repr_html_`), so reports and frontends
    without a widget manager never show a blank widget."""

    @property
    def html(self) -> str:
        """The latest static rendering (same as `_repr_html_()`)."""
        return self._repr_html_()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = dict(W.Widget._repr_mimebundle_(self, **kwargs) or {})
        data["text/html"] = self._repr_html_()
        return data


def _frame_row(record: Mapping[str, Any]) -> pd.Series | None:
    """The parsed sessions-frame row of one record (engine pod, duration...), None if unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = sessions_frame([record])
    except (TypeError, ValueError):
        return None
    return frame.iloc[0] if len(frame) else None


# ---------------------------------------------------------------- session lookup

class SessionLookup(_StaticRendering, W.VBox):
    """Paste a session id, a URL containing one, or a client-label search; see the session.

    Shows a summary card, the redacted persona config, the transcript (table and figure) and,
    on request, a recording link. Errors show inline. `lookup(text)` equals typing + Enter.
    """

    def __init__(self, client: Any = None, *, tz: str | None = None) -> None:
        self._client = client
        self.tz = tz
        self.text = W.Text(placeholder="session id, URL containing one, or client label",
                           continuous_update=False, layout=W.Layout(width="32em"))
        self.button = W.Button(description="Look up", icon="search")
        self.message = W.HTML()
        self.matches = W.Dropdown(options=[], description="Matches",
                                  layout=W.Layout(width="48em", display="none"))
        self.matches_table = W.HTML()
        self.card = W.HTML()
        self.recording_button = W.Button(description="Get recording link", icon="film",
                                         disabled=True)
        self.recording = W.HTML()
        self.config = W.HTML()
        self.transcript = W.HTML()
        self.figure_output = W.Output()
        self.session: dict[str, Any] | None = None
        self.transcript_df: pd.DataFrame | None = None
        self.figure: go.Figure | None = None
        self.match_records: list[dict[str, Any]] = []
        self._quiet = False
        self.text.observe(self._on_text, names="value")
        self.button.on_click(lambda _: self._run(self.text.value))
        self.matches.observe(self._on_match, names="value")
        self.recording_button.on_click(lambda _: self.fetch_recording())
        super().__init__([
            _style_widget(), W.HBox([self.text, self.button]), self.message, self.matches,
            self.matches_table, self.card, W.HBox([self.recording_button, self.recording]),
            self.config, self.transcript, self.figure_output,
        ])

    # -- actions

    def lookup(self, text: str) -> SessionLookup:
        """Look up `text` as if typed and submitted; returns self so a cell can display it."""
        self._quiet = True
        try:
            self.text.value = str(text)
        finally:
            self._quiet = False
        self._run(str(text))
        return self

    def open_session(self, session_id: str) -> None:
        """Show one session by id (used by the match list and the explorer)."""
        self._clear_session()
        self._guard(lambda: self._show_session(self._get_client().get_session(session_id)))

    def fetch_recording(self) -> str | None:
        """Fetch the presigned recording URL of the shown session (only ever on request)."""
        if not self.session:
            return None
        sid = str(self.session.get("id"))
        try:
            url = self._get_client().get_recording_url(sid)
        except NotFoundError:
            self.recording.value = _html.message("No recording kept for this session.",
                                                 kind="info")
            return None
        except Exception as exc:  # noqa: BLE001 - every failure becomes an inline message
            self.recording.value = _html.message(_error_text(exc))
            return None
        self.recording.value = _html.link(url, "Download recording (link valid about an hour)")
        return url

    # -- internals

    def _get_client(self) -> Any:
        if self._client is None:
            from .client import connect

            self._client = connect()
        return self._client

    def _on_text(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._run(change["new"])

    def _on_match(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.open_session(change["new"])

    def _guard(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - no traceback reaches the notebook reader
            self.message.value = _html.message(_error_text(exc))

    def _clear_session(self) -> None:
        self.session = self.transcript_df = self.figure = None
        for view in (self.message, self.card, self.recording, self.config, self.transcript):
            view.value = ""
        self.recording_button.disabled = True
        _show_figure(self.figure_output, None)

    def _run(self, text: str) -> None:
        self._clear_session()
        self.match_records = []
        self.matches_table.value = ""
        self.matches.layout.display = "none"
        self.matches.options = []
        text = (text or "").strip()
        if not text:
            self.message.value = _html.message(
                "Paste a session id, a URL containing one, or a client label.", kind="info")
            return
        self._guard(lambda: self._resolve(text))

    def _resolve(self, text: str) -> None:
        client = self._get_client()
        found = _UUID.search(text)
        if found and not text.lower().startswith(("http://", "https://")):
            self._show_session(client.get_session(found.group(0)))
        elif _ID_ATTEMPT.fullmatch(text):
            self._show_session(client.get_session(text))
        else:
            self._search(client, text)

    def _search(self, client: Any, text: str) -> None:
        page = client.list_sessions(page=1, per_page=100, search=text)
        records = [r for r in (page.get("data") or []) if isinstance(r, Mapping)]
        total = (page.get("meta") or {}).get("total") or len(records)
        if not records:
            self.message.value = _html.message(f"No session matches {text!r}.", kind="info")
        elif len(records) == 1:
            self._show_session(dict(records[0]))
        else:
            self._show_matches(records, total, text)

    def _show_matches(self, records: list[Mapping[str, Any]], total: int, text: str) -> None:
        self.match_records = [dict(r) for r in records]
        frame = sessions_frame(self.match_records)
        note = f"{total} sessions match {text!r}"
        if total > len(records):
            note += f"; showing the newest {len(records)}, refine the search to see others"
        self.message.value = _html.message(note + ". Choose one below.", kind="info")
        columns = [c for c in ("client_label", "exit_status", "start_time", "duration",
                               "engine_pod", "engine_version") if c in frame.columns]
        self.matches_table.value = _html.table(frame, columns=columns)
        options = [("choose a session…", None)]
        for sid, row in frame.iterrows():
            options.append((" · ".join([_html.format_value(row.get("start_time")),
                                        _html.format_value(row.get("client_label")),
                                        status_label(row.get("exit_status")), str(sid)]), sid))
        self.matches.options = options
        self.matches.layout.display = ""

    def _show_session(self, record: Mapping[str, Any]) -> None:
        record = dict(record)
        self.session = record
        row = _frame_row(record)
        field = (lambda name, raw: row.get(name) if row is not None else record.get(raw))
        status = record.get("exitStatus")
        self.card.value = _html.card(f"Session {record.get('id')}", {
            "exit status": status_label(status) if status is not None else ACTIVE_LABEL + " (no end yet)",
            "client label": record.get("clientLabel"),
            "start": field("start_time", "startTime"),
            "end": field("end_time", "endTime"),
            "duration": field("duration", "sessionLengthMs"),
            "engine host": record.get("engineHost"),
            "region": field("engine_region", "engineHost"),
            "pod": field("engine_pod", "engineHost"),
            "engine version": record.get("engineVersion"),
            "persona": field("persona_name", "personaId"),
            "persona id": record.get("personaId"),
            "LLM / TTS": f"{_html.format_value(field('llm_model', 'personaConfig'))} / "
                         f"{_html.format_value(field('tts_provider', 'personaConfig'))}",
        }, accent=status_color(status))
        config = record.get("personaConfig")
        self.config.value = (
            "<details><summary>persona config (secrets redacted)</summary>"
            + _html.pre(json.dumps(redact(config), indent=2, ensure_ascii=False, default=str))
            + "</details>") if config is not None else ""
        self.recording_button.disabled = False
        self._show_transcript(record)

    def _show_transcript(self, record: dict[str, Any]) -> None:
        try:
            transcript = self._get_client().get_transcript(str(record.get("id")))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.transcript_df = transcript_frame(transcript)
        except NotFoundError:
            self.transcript.value = _html.message(
                "No transcript kept for this session (zero data retention, or none recorded).",
                kind="info")
        except Exception as exc:  # noqa: BLE001 - the card stays; the failure is shown inline
            self.transcript.value = _html.message("Transcript unavailable: " + _error_text(exc),
                                                  kind="warning")
        else:
            self.transcript.value = _html.table(self.transcript_df, index=False, columns=[
                c for c in ("role", "text", "timestamp", "offset", "speaking_duration",
                            "interrupted") if c in self.transcript_df.columns])
        turns = self.transcript_df if self.transcript_df is not None else transcript_frame({})
        self.figure = session_detail(turns, session=record, tz=self.tz)
        _show_figure(self.figure_output, self.figure)

    # -- static rendering

    def _repr_html_(self) -> str:
        """The current view as static HTML (figure as a plotly div; plotly.js not included)."""
        parts = [_html.style(), self.message.value, self.matches_table.value, self.card.value,
                 self.recording.value, self.config.value, self.transcript.value]
        if self.figure is not None:
            parts.append(_html.figure_div(self.figure))
        if not any(p for p in parts[1:]):
            parts.append(_html.message("No session looked up yet.", kind="info"))
        return "".join(parts)



# ---------------------------------------------------------------- session explorer

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


class SessionExplorer(_StaticRendering, W.VBox):
    """Filters (time range, exit statuses, region, version, pod, persona) over a sessions frame,
    linked to a table and a timeline; choosing a session opens it in an embedded lookup."""

    def __init__(self, df: pd.DataFrame, client: Any = None, *, tz: str | None = None,
                 by: str = "engine_pod", max_rows: int = 200) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"SessionExplorer needs a sessions DataFrame, got {type(df).__name__}")
        for column in ("start_time", "exit_status", by):
            if column not in df.columns:
                raise ValueError(f"column {column!r} is not in the frame; valid columns: "
                                 + ", ".join(repr(c) for c in df.columns))
        if max_rows < 1:
            raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
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
        self.session_lookup = SessionLookup(client, tz=tz)
        self.figure: go.Figure | None = None
        self.matching: pd.DataFrame = df.iloc[:0]
        for control in (self.time_range, self.statuses, *self.dropdowns.values()):
            control.observe(lambda _: self.refresh(), names="value")
        self.select.observe(self._on_select, names="value")
        super().__init__([
            _style_widget(), self.time_range,
            W.HBox([self.statuses, W.VBox(list(self.dropdowns.values()))]),
            self.summary, self.table, self.timeline_output, self.select, self.session_lookup,
        ])
        self.refresh()

    def filtered(self) -> pd.DataFrame:
        """The sessions matching the current filters, newest first."""
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
        self.table.value = _html.table(self._display_times(shown), columns=columns)
        if len(shown) < len(self.matching):
            self.table.value += _html.message(
                f"table shows the newest {len(shown)} of {len(self.matching)} matching sessions; "
                "the timeline shows them all", kind="info")
        self.figure = session_timeline(self.matching, by=self.by, tz=self.tz)
        _show_figure(self.timeline_output, self.figure)
        options: list[tuple[str, Any]] = [("choose a session to open…", None)]
        for sid, row in shown.iterrows():
            options.append((" · ".join([_html.format_value(row.get("start_time")),
                                        _html.format_value(row.get("client_label")),
                                        status_label(row.get("exit_status")), str(sid)]), sid))
        self.select.options = options

    def open_session(self, session_id: str) -> None:
        """Open one session in the embedded lookup."""
        self.session_lookup.lookup(session_id)

    def _on_select(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.open_session(change["new"])

    def _display_times(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.tz is None or frame.empty:
            return frame
        out = frame.copy()
        for column in ("start_time", "end_time"):
            if column in out.columns:
                out[column] = pd.to_datetime(out[column], utc=True).dt.tz_convert(self.tz)
        return out

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

