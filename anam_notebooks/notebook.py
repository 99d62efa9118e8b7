"""The one set-up call a notebook makes, and how it publishes what it found.

    client = an.setup_notebook(redact=redact)      # first code cell after the parameters
    ...
    an.publish_findings(ranked)                     # where the findings are

`setup_notebook` makes every plotly figure carry an offline HTML twin next to its JupyterLab
mimetype and loads plotly.js once (so plain `jupyter nbconvert --to html`, JupyterLab's export
and static viewers draw every figure without a network), turns data-quality warnings into "data
notes" a report lists, connects (the API, or the simulator without a key) and, with `redact`,
masks what customers and their users wrote (labels, prompts, transcripts...) in everything read.

`publish_findings` displays findings as a value (`application/vnd.anam.findings+json`) with a
callout for people; `read_findings` gets them back from an executed notebook.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from .analysis.findings import DEFAULT_Q, suspect_findings, suspect_headline
from .api.source import Redaction, SessionSource
from .data.fields import MalformedRecordWarning
from .data.store import CacheFileWarning
from .fetch import connect
from .views.figures import plotlyjs_bundle, use_offline_renderer
from .views.findings import FINDINGS_MIME, findings_bundle, note_bundle
from .views.masking import RedactedClient
from .views.static import StaticFigureWarning, static_figures_requested

_LOGGER = "anam_notebooks"
#: What every published finding holds (the findings file's schema, see reports.report).
FINDING_KEYS = ("level", "unit", "counts", "rates", "window", "q_value", "sentence")


def _display(data: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> None:
    from IPython.display import display

    display(dict(data), raw=True, metadata=dict(metadata or {}))


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# The masking of a redacted run: data notes pass through it too (a note may quote a value).
_note_gate: Redaction | None = None


def _note(kind: str, text: str) -> None:
    _display(note_bundle(kind, text if _note_gate is None else _note_gate.text(text)))


class _NoteHandler(logging.Handler):
    """Warnings logged by the package (a list that kept changing, skipped items) as data notes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _note("log", record.getMessage())
        except Exception:  # noqa: BLE001 - a note must never break the notebook
            self.handleError(record)


_original_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    if issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning):
        _note(category.__name__, str(message))
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


def capture_data_notes() -> None:
    """Show the package's data-quality warnings and warning log lines as data-note outputs,
    each time they happen (not once per code location), so a report can count them."""
    for category in (MalformedRecordWarning, CacheFileWarning, StaticFigureWarning):
        warnings.filterwarnings("always", category=category)
    warnings.showwarning = _show_warning
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        handler = _NoteHandler(level=logging.WARNING)
        logger.addHandler(handler)


def setup_notebook(*, redact: bool = False, static_figures: bool = False, announce: bool = True,
                   **connect_options: Any) -> SessionSource:
    """Set a notebook up for figures everywhere, data notes and (optionally) redaction; connect.

    Parameters
    ----------
    redact : bool
        Mask what customers and their users wrote in everything read through the returned
        client, for a report with a wider audience: records, frames from `fetch_sessions` and
        `fetch_transcripts` (a cache still holds the raw data), the lookup and explorer
        widgets, findings and data notes. Counts, statuses, times, engines and product names
        stay, so every figure still works; the table under Notes lists each field.
    static_figures : bool
        Give every plotly figure a PNG image too (drawn by kaleido in the system's Chromium, one
        browser for the whole notebook), for viewers that run no scripts: GitHub, VS Code's
        preview, nbviewer, `nbconvert --to markdown` or PDF. ``ANAM_STATIC_FIGURES=1`` in the
        environment does the same, so a plain `papermill` run can ask for it. Without a browser,
        one data note says how to get one and figures keep their interactive forms only.
    announce : bool
        Print one line naming the data source.
    **connect_options
        Passed to `connect` (api_key, base_url, or simulator settings).

    Returns
    -------
    SessionSource
        The client to pass to `fetch_sessions`, `SessionLookup` and the rest (an `AnamClient`,
        or a `RedactedClient` around one).

    Raises
    ------
    ConfigurationError
        As `connect` does, e.g. a base URL without an API key.
    ValueError
        When ``ANAM_STATIC_FIGURES`` holds something other than 1/0 (true/false).

    Notes
    -----
    What `redact=True` masks and keeps:

    | field | masked or kept | why |
    |---|---|---|
    | `clientLabel` (`client_label`) | masked: `label-<8 hex>` | set by the customer's app; one stand-in per label |
    | `personaConfig.name`, `personaName` (`persona_name`) | masked: `persona-<8 hex>` | named by the customer |
    | `systemPrompt`, `personality`, `fillerPhrases` | masked | written by the customer |
    | knowledge and tools (names, descriptions) in `personaConfig` | masked | written by the customer |
    | other text in `personaConfig` (metadata, URLs, unknown keys) | masked | may hold the customer's words |
    | `type`, `id`, `modelName`, `format`, `languageCode` | kept | product settings (`llm_model`...) |
    | `ttsProvider`, `ttsProviderModelId`, `ttsProviderVoiceId` | kept | product names (`tts_provider`...) |
    | `avatarEngineKey`, `avatarVersion` | kept | product names (`avatar_version`) |
    | numbers and switches in `personaConfig` | kept | settings, no words |
    | `clientMetadata.userAgent`, `.sdkVersion` | kept | from the browser and SDK; parsed into columns |
    | other `clientMetadata` fields | masked | arbitrary metadata the customer's app sends |
    | transcript `messages[].message` (`text`) | masked | what the end user and the persona said |
    | transcript roles, timestamps, durations, interruptions | kept | timings (response latency) |
    | ids, times, `sessionLengthMs`, `exitStatus` | kept | counts, statuses and times |
    | `engineHost`, `engineProtocol`, `engineVersion` | kept | engines |
    | `apiKeyId`, `organizationId` | kept | identifiers, no words |
    | any other text field | masked | an unknown field may hold a person's words |
    | recordings | refused | a recording is the conversation itself |
    """
    use_offline_renderer(static=static_figures_requested(static_figures))
    if _in_kernel():
        data, metadata = plotlyjs_bundle()
        _display(data, metadata)
        capture_data_notes()
    global _note_gate
    client: SessionSource = connect(**connect_options)
    if redact:
        client = RedactedClient(client)
    _note_gate = client.redaction
    if announce:
        masked = (" (redacted: labels, persona names, prompts, transcripts and other text customers "
                  "wrote are masked)") if redact else ""
        print(f"Data source: {client.source}{masked}")
    return client


def publish_findings(findings: pd.DataFrame | Sequence[Mapping[str, Any]], *, q: float = DEFAULT_Q,
                     quiet_text: str | None = None, headline: str | None = None) -> list[dict[str, Any]]:
    """Display findings as a value a report and a scheduler read, with a callout for people.

    Parameters
    ----------
    findings : DataFrame or sequence of dict
        The output of `analysis.rank_suspects` (its headlines with q < `q` are taken), or
        finding dicts (`analysis.suspect_findings`, `analysis.verdict_findings`).
    q : float
        The q-value threshold (default 0.01), recorded with the findings.
    quiet_text : str, optional
        What the callout says when nothing stands out.
    headline : str, optional
        A lead sentence above the findings; for a `rank_suspects` frame it defaults to the
        "engine, provider or client?" answer (`analysis.suspect_headline`).

    Returns
    -------
    list of dict
        The findings published (end the cell with `;` or assign it to keep it from echoing).

    Raises
    ------
    TypeError, ValueError
        When a frame is not a `rank_suspects` result, `q` is not in (0, 1], or a finding dict
        lacks one of `FINDING_KEYS`.
    """
    if isinstance(findings, pd.DataFrame):
        found = suspect_findings(findings, q=q)
        headline = headline if headline is not None else suspect_headline(findings, q=q)
    else:
        found = [dict(f) for f in findings]
    for n, finding in enumerate(found):
        missing = [k for k in FINDING_KEYS if k not in finding]
        if missing:
            raise ValueError(f"finding {n} lacks {missing}: every finding needs "
                             f"{list(FINDING_KEYS)} (see analysis.suspect_findings)")
    _display(findings_bundle(found, q=q, quiet_text=quiet_text, headline=headline))
    return found


def read_findings(notebook: str | Path | nbformat.NotebookNode) -> list[dict[str, Any]] | None:
    """The findings an executed notebook published, or None if it published none.

    Parameters
    ----------
    notebook : path or NotebookNode
        An executed notebook (from papermill, our CLI, or a saved JupyterLab session).

    Returns
    -------
    list of dict or None
        Every finding of every findings output, in order.

    Raises
    ------
    OSError, nbformat.reader.NotJSONError
        When the file cannot be read as a notebook.
    """
    nb = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.read(
        str(notebook), as_version=4)
    found: list[dict[str, Any]] | None = None
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            value = output.get("data", {}).get(FINDINGS_MIME)
            if isinstance(value, Mapping):
                found = (found or []) + [dict(f) for f in value.get("findings", [])]
    return found
