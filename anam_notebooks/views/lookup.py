"""`SessionLookup`: paste a session id, a URL or a client label, and see that session.

The widget keeps its child widgets as attributes and its latest figures/HTML readable, so it can
be driven without a browser, and renders statically (`_repr_html_`) so an executed notebook or
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
import pandas as pd
import plotly.graph_objects as go

from ..analysis.explain import explain_row
from ..api.errors import NotFoundError
from ..api.ids import UUID_PATTERN
from ..api.source import SessionSource, blocking_source
from ..data.sessions import sessions_frame
from ..data.transcripts import transcript_frame
from . import html as _html
from .base import StaticRendering, error_text, show_figure, style_widget
from .colors import ACTIVE_LABEL, status_color, status_label
from .plots import session_detail
from .redact import redact
from .tables import format_frame

_UUID = re.compile(UUID_PATTERN)
_ID_ATTEMPT = re.compile(r"[0-9a-fA-F]{32}|(?=.*-)[0-9a-fA-F-]{16,}|\{.*\}|urn:uuid:.*|https?://.*",
                         re.IGNORECASE)


def _frame_row(record: Mapping[str, Any]) -> pd.Series | None:
    """The parsed sessions-frame row of one record (engine pod, duration...), None if unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = sessions_frame([record])
    except (TypeError, ValueError):
        return None
    return frame.iloc[0] if len(frame) else None


class SessionLookup(StaticRendering, W.VBox):
    """Paste a session id, a URL containing one, or a client-label search; see the session.

    Shows a summary card, the redacted persona config, the transcript (table and figure) and,
    on request, a recording link. Errors show inline. `lookup(text)` equals typing + Enter.

    Parameters
    ----------
    client : SessionSource, optional
        The client to read sessions with; `connect()` (the API with a key, else the simulator)
        on first use when None. With a `RedactedClient` every record, search echo and error
        message shown is masked.
    tz : str, optional
        IANA time zone for the times shown; UTC when None.
    findings : DataFrame or list of dict, optional
        The table `analysis.rank_suspects` returned, or finding dicts: the card then says
        which finding the session falls in (`analysis.explain_session`).
    frame : DataFrame, optional
        The sessions frame the findings came from: a session in no finding is then compared
        with its pod, provider, SDK and hour.

    Raises
    ------
    TypeError
        When `client` is not a `SessionSource` (the message names what it lacks).
    """

    def __init__(self, client: SessionSource | None = None, *, tz: str | None = None, findings: Any = None,
                 frame: pd.DataFrame | None = None) -> None:
        self._client = blocking_source(client) if client is not None else None
        self.tz = tz
        self.findings = findings
        self.frame = frame
        self.text = W.Text(placeholder="session id, URL containing one, or client label",
                           continuous_update=False, layout=W.Layout(width="32em"))
        self.button = W.Button(description="Look up", icon="search", layout=W.Layout(width="auto"))
        self.message = W.HTML()
        self.matches = W.Dropdown(options=[], description="Matches",
                                  layout=W.Layout(width="48em", display="none"))
        self.matches_table = W.HTML()
        self.card = W.HTML()
        # Sized to its label: ipywidgets' fixed button width cuts it to "Get recording l…".
        self.recording_button = W.Button(description="Get recording link", icon="film",
                                         disabled=True, layout=W.Layout(width="auto"))
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
            style_widget(), W.HBox([self.text, self.button]), self.message, self.matches,
            self.matches_table, self.card, W.HBox([self.recording_button, self.recording]),
            self.config, self.transcript, self.figure_output,
        ])

    # -- actions

    def lookup(self, text: str) -> SessionLookup:
        """Look up `text` as if typed and submitted.

        Parameters
        ----------
        text : str
            A session id, a URL holding one, or a client-label search.

        Returns
        -------
        SessionLookup
            The widget itself, so a cell ending in ``w.lookup(...)`` displays it. An invalid
            id, a 404, a refused key or an unreachable API show as an inline message instead
            of raising, so a notebook keeps running.
        """
        self._quiet = True
        try:
            self.text.value = str(text)
        finally:
            self._quiet = False
        self._run(str(text))
        return self

    def open_session(self, session_id: str) -> None:
        """Show one session by id (used by the match list and the explorer).

        Parameters
        ----------
        session_id : str
            The session's UUID.
        """
        self._clear_session()
        self._guard(lambda: self._show_session(self._get_client().get_session(session_id)))

    def fetch_recording(self) -> str | None:
        """Fetch the presigned recording URL of the shown session (only ever on request).

        Returns
        -------
        str or None
            The URL, or None when no session is shown, none was recorded, or it failed
            (the reason shows beside the button).
        """
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
            self.recording.value = _html.message(self._shown(error_text(exc)))
            return None
        self.recording.value = _html.link(url, "Download recording (link valid about an hour)")
        return str(url)

    # -- internals

    def _get_client(self) -> SessionSource:
        if self._client is None:
            from ..fetch import connect  # the default client is decided on top (API or simulator)

            self._client = connect()
        return self._client

    def _shown(self, text: str) -> str:
        """Text about to be shown (a search echoed, an error), masked in a redacted view."""
        gate = self._client.redaction if self._client is not None else None
        return text if gate is None else gate.text(text)

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
            self.message.value = _html.message(self._shown(error_text(exc)))

    def _clear_session(self) -> None:
        self.session = self.transcript_df = self.figure = None
        for view in (self.message, self.card, self.recording, self.config, self.transcript):
            view.value = ""
        self.recording_button.disabled = True
        show_figure(self.figure_output, None)

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

    def _search(self, client: SessionSource, text: str) -> None:
        page = client.list_sessions(page=1, per_page=100, search=text)
        records = [r for r in (page.get("data") or []) if isinstance(r, Mapping)]
        total = (page.get("meta") or {}).get("total") or len(records)
        if not records:
            self.message.value = _html.message(f"No session matches {self._shown(text)!r}.", kind="info")
        elif len(records) == 1:
            self._show_session(dict(records[0]))
        else:
            self._show_matches(records, total, text)

    def _show_matches(self, records: list[Mapping[str, Any]], total: int, text: str) -> None:
        self.match_records = [dict(r) for r in records]
        frame = sessions_frame(self.match_records)
        note = f"{total} sessions match {self._shown(text)!r}"
        if total > len(records):
            note += f"; showing the newest {len(records)}, refine the search to see others"
        self.message.value = _html.message(note + ". Choose one below.", kind="info")
        columns = [c for c in ("client_label", "exit_status", "start_time", "duration",
                               "engine_pod", "engine_version") if c in frame.columns]
        self.matches_table.value = _html.table(format_frame(frame[columns], tz=self.tz))
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
            **({"diagnosis": self._explain(record, row)} if self.findings is not None else {}),
        }, accent=status_color(status))
        config = record.get("personaConfig")
        self.config.value = (
            "<details><summary>persona config (secrets redacted)</summary>"
            + _html.pre(json.dumps(redact(config), indent=2, ensure_ascii=False, default=str))
            + "</details>") if config is not None else ""
        self.recording_button.disabled = False
        self._show_transcript(record)

    def _explain(self, record: Mapping[str, Any], row: pd.Series | None) -> str:
        """The findings this session falls in, or how usual its exit is (explain_session)."""
        sid = str(record.get("id"))
        frame = self.frame
        if frame is not None and sid in frame.index:
            return explain_row(sid, frame.loc[sid], self.findings, frame)
        if row is None:
            return "not comparable (the record does not parse)"
        return explain_row(sid, row, self.findings, frame)

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
            self.transcript.value = _html.message("Transcript unavailable: " + self._shown(error_text(exc)),
                                                  kind="warning")
        else:
            self.transcript.value = _html.table(self.transcript_df, index=False, columns=[
                c for c in ("role", "text", "timestamp", "offset", "speaking_duration",
                            "interrupted") if c in self.transcript_df.columns])
        turns = self.transcript_df if self.transcript_df is not None else transcript_frame({})
        self.figure = session_detail(turns, session=record, tz=self.tz)
        show_figure(self.figure_output, self.figure)

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
