"""Findings and data notes as notebook outputs a machine can read and a person can read.

A findings output carries `FINDINGS_MIME` (a JSON object: `{"findings": [...], "q": 0.01}`) next
to an HTML callout and plain text, so an executed notebook holds its findings as a value
(`anam_notebooks.read_findings` finds it; a report lifts it to the top of the page). A data note
(a data-quality warning raised while the notebook ran: malformed records, a list that kept
changing) is an output with `NOTE_MIME` (`{"category": ..., "message": ...}`) and plain text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import html as _html

FINDINGS_MIME = "application/vnd.anam.findings+json"
NOTE_MIME = "application/vnd.anam.data-note+json"

_CALLOUT_STYLE = (
    "<style>"
    ".anam-findings{border:1px solid #d9d9d9;border-left:6px solid #b42318;background:#fef3f2;"
    "padding:8px 14px;margin:6px 0;font:14px/1.5 system-ui,sans-serif;border-radius:4px;"
    "max-width:72em;overflow-wrap:anywhere}"
    ".anam-findings.anam-quiet{border-left-color:#067647;background:#ecfdf3}"
    ".anam-findings h3{margin:0 0 4px;font-size:15px}"
    ".anam-findings ol{margin:4px 0 2px 1.2em;padding:0}"
    ".anam-findings li{margin:2px 0}"
    ".anam-notes{border-left:6px solid #b54708;background:#fffaeb;padding:6px 14px;margin:6px 0;"
    "font:13px/1.5 system-ui,sans-serif;border-radius:4px;max-width:72em;overflow-wrap:anywhere}"
    ".anam-notes h3{margin:0 0 4px;font-size:14px}.anam-notes ul{margin:2px 0 2px 1.2em;padding:0}"
    "</style>"
)


def callout_style() -> str:
    """The stylesheet of the findings callout and the data-notes box."""
    return _CALLOUT_STYLE


def findings_callout(findings: Sequence[Mapping[str, Any]], *, q: float,
                     quiet_text: str | None = None, headline: str | None = None) -> str:
    """An escaped HTML callout: the `headline` answer, then each finding's sentence, or a green
    "nothing stands out"."""
    lead = f'<p class="anam-headline"><strong>{_html.esc(headline)}</strong></p>' if headline else ""
    if not findings:
        text = quiet_text or f"No unit stands out (no headline with q < {q:g})."
        return (f'{_CALLOUT_STYLE}<div class="anam-findings anam-quiet" role="note">'
                f"<h3>Findings</h3>{lead}{_html.esc(text)}</div>")
    noun = "finding stands" if len(findings) == 1 else "findings stand"
    items = "".join(f"<li>{_html.esc(f.get('sentence') or '')}</li>" for f in findings)
    return (f'{_CALLOUT_STYLE}<div class="anam-findings" role="note">'
            f"<h3>{len(findings)} {noun} out (q &lt; {_html.esc(f'{q:g}')})</h3>{lead}<ol>{items}</ol></div>")


def findings_bundle(findings: Sequence[Mapping[str, Any]], *, q: float,
                    quiet_text: str | None = None, headline: str | None = None) -> dict[str, Any]:
    """The display data of a findings output: the JSON value, the callout and plain text."""
    lines = ([f"{n}. {f.get('sentence')}" for n, f in enumerate(findings, start=1)]
             or [quiet_text or f"No unit stands out (no headline with q < {q:g})."])
    return {FINDINGS_MIME: {"findings": [dict(f) for f in findings], "q": q, "quiet_text": quiet_text,
                            "headline": headline},
            "text/html": findings_callout(findings, q=q, quiet_text=quiet_text, headline=headline),
            "text/plain": "\n".join(([headline] if headline else []) + lines)}


def note_bundle(category: str, message: str) -> dict[str, Any]:
    """The display data of one data note."""
    return {NOTE_MIME: {"category": category, "message": message},
            "text/plain": f"Data note ({category}): {message}"}


def notes_section(notes: Iterable[tuple[str, int]]) -> str:
    """An escaped "Data notes" box: each distinct note once, with how often it was raised."""
    notes = list(notes)
    if not notes:
        return ""
    items = "".join(f"<li>{_html.esc(text)}" + (f" <em>(×{count})</em>" if count > 1 else "") + "</li>"
                    for text, count in notes)
    return (f'{_CALLOUT_STYLE}<section class="anam-notes" id="data-notes" role="note">'
            "<h3>Data notes</h3><p style=\"margin:0\">Raised while the data was read: the figures "
            f"below may rest on incomplete data.</p><ul>{items}</ul></section>")
