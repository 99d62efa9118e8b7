"""The one set-up call a notebook makes, and how it publishes what it found.

    client = an.setup_notebook(redact=redact)      # first code cell after the parameters
    ...
    an.publish_findings(ranked)                     # where the findings are

`setup_notebook` makes every plotly figure carry an offline HTML twin next to its JupyterLab
mimetype and loads plotly.js once (so plain `jupyter nbconvert --to html`, JupyterLab's export
and static viewers draw every figure without a network), turns data-quality warnings into "data
notes" a report lists, connects (the API, or the simulator without a key) and, with `redact`,
masks transcript text, client labels and system prompts in everything read.

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


class _NoteHandler(logging.Handler):
    """Warnings logged by the package (a list that kept changing, skipped items) as data notes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _display(note_bundle("log", record.getMessage()))
        except Exception:  # noqa: BLE001 - a note must never break the notebook
            self.handleError(record)


_original_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    if issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning):
        _display(note_bundle(category.__name__, str(message)))
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
                   **connect_options: Any) -> Any:
    """Set a notebook up for figures everywhere, data notes and (optionally) redaction; connect.

    Parameters
    ----------
    redact : bool
        Mask transcript text, client labels and system prompts in every record read through
        the returned client (counts, statuses and figures stay), for a report with a wider
        audience. Recordings are refused.
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
    AnamClient or RedactedClient
        The client to pass to `fetch_sessions`, `SessionLookup` and the rest.

    Raises
    ------
    ConfigurationError
        As `connect` does, e.g. a base URL without an API key.
    ValueError
        When ``ANAM_STATIC_FIGURES`` holds something other than 1/0 (true/false).
    """
    use_offline_renderer(static=static_figures_requested(static_figures))
    if _in_kernel():
        data, metadata = plotlyjs_bundle()
        _display(data, metadata)
        capture_data_notes()
    client: Any = connect(**connect_options)
    if redact:
        client = RedactedClient(client)
    if announce:
        masked = " (redacted: transcript text, client labels and system prompts masked)" if redact else ""
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
