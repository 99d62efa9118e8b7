"""Executed notebook → one self-contained HTML report (nbconvert, offline, plotly.js inlined once).

Figures already carry an offline HTML twin when the notebook called `setup_notebook`; older
outputs with only `application/vnd.plotly.v1+json` get one here. Either way every figure becomes
a plain `<div>` plus a call into one shared plotly.js that the report template inlines in the
page head, and the notebook's own plotly.js loader is dropped. Widget views (blank without a
live kernel) give way to the static HTML our widgets put beside them.

What a reader needs at the top is lifted there: the findings callout (from the findings
output, see `views.findings`), a "Data notes" box with every data-quality warning raised while
the notebook ran (deduplicated, with counts; other stderr noise is dropped), and, for a long
report, a table of contents.
"""

from __future__ import annotations

import base64
import copy
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import HTMLExporter

from ..views import html as _html
from ..views.figures import LOADER_METADATA, PLOTLY_MIME, PNG_MIME, STATIC_CLASS, figure_html, plotlyjs_script
from ..views.findings import FINDINGS_MIME, NOTE_MIME, callout_style, findings_callout, notes_section

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_TEMPLATE_DIR = Path(__file__).parent / "templates"
_PLOTLYJS_MARKERS = ("window.PlotlyConfig", "plotly.js v", "plotly-latest.min.js")
# A warning as Python prints it to stderr: "path:12: MalformedRecordWarning: message".
_WARNING_LINE = re.compile(r"^\S.*?:\d+: (?P<category>\w*Warning): (?P<message>.+)$")
# A logged warning as logging's last-resort handler prints it.
_LOG_LINE = re.compile(r"^(?:WARNING:[\w.]+:)?(?P<message>(?:the session list kept changing|page \d+: "
                       r"skipped|GET /v1/sessions:|sessions are not newest-first).+)$")
_HEADING = re.compile(r"^(#{2,3})\s+(.+?)\s*#*\s*$", re.MULTILINE)
TOC_MIN_SECTIONS = 5


@dataclass
class Prepared:
    """A notebook made ready for a page without a kernel, and what was lifted out of it."""

    notebook: nbformat.NotebookNode
    figures: int = 0
    findings: list[dict[str, Any]] | None = None
    q: float | None = None
    quiet_text: str | None = None
    headline: str | None = None
    notes: Counter[str] = field(default_factory=Counter)
    sections: list[tuple[str, str, int]] = field(default_factory=list)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _is_plotlyjs_loader(output: Mapping[str, Any]) -> bool:
    """An output that only exists to load plotly.js (ours, or plotly's `notebook` renderer's)."""
    marker = output.get("metadata", {}).get("anam_notebooks", {})
    if isinstance(marker, Mapping) and marker.get("plotlyjs") == LOADER_METADATA["anam_notebooks"]["plotlyjs"]:
        return True
    data = output.get("data", {})
    return PLOTLY_MIME not in data and any(m in _text(data.get("text/html", "")) for m in _PLOTLYJS_MARKERS)


def _stderr_notes(text: str) -> list[str]:
    """Data-quality warnings in a stderr stream (the rest of stderr is progress and noise)."""
    notes = []
    for line in text.splitlines():
        match = _WARNING_LINE.match(line.strip()) or _LOG_LINE.match(line.strip())
        if match:
            notes.append(match.group("message").strip())
    return notes


def _static_outputs(outputs: Iterable[dict], prepared: Prepared, printed: bool = False) -> list[dict]:
    """Outputs rewritten for a page with no kernel; figures counted, findings and notes lifted.
    `printed`: for a page without scripts (PDF), figures are their static images."""
    kept: list[dict] = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream" and output.get("name") == "stderr":
            prepared.notes.update(_stderr_notes(_text(output.get("text", ""))))
            continue
        if kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            if _is_plotlyjs_loader(output):
                continue
            if NOTE_MIME in data:
                note = data[NOTE_MIME]
                prepared.notes[str(note.get("message", "")) if isinstance(note, Mapping) else str(note)] += 1
                continue
            if FINDINGS_MIME in data:
                value = data[FINDINGS_MIME]
                if isinstance(value, Mapping):
                    prepared.findings = (prepared.findings or []) + list(value.get("findings", []))
                    prepared.q = value.get("q", prepared.q)
                    prepared.quiet_text = value.get("quiet_text") or prepared.quiet_text
                    prepared.headline = prepared.headline or value.get("headline")
            if PLOTLY_MIME in data:
                output = copy.deepcopy(output)
                png = _png(data)
                output["data"] = ({"text/html": _printed_figure(png)} if printed else
                                  {"text/html": figure_html(data[PLOTLY_MIME], png)})
                prepared.figures += 1
            elif WIDGET_MIME in data:
                rest = {k: v for k, v in data.items() if k not in (WIDGET_MIME, "text/plain")}
                if not rest:
                    continue  # a widget with no static rendering (e.g. a progress bar)
                output = copy.deepcopy(output)
                output["data"] = rest
        kept.append(output)
    return kept


def _png(data: Mapping[str, Any]) -> bytes | None:
    """A figure's static image (see `setup_notebook(static_figures=True)`), kept in the report
    so it shows where scripts do not run (mail, PDF)."""
    encoded = data.get(PNG_MIME)
    if not encoded:
        return None
    try:
        return base64.b64decode(_text(encoded), validate=False)
    except (ValueError, TypeError):
        return None


def _printed_figure(png: bytes | None) -> str:
    if png is None:
        return ('<p class="anam-no-image">(A figure without a static image: run with static figures '
                "on, e.g. <code>--static-figures</code>, to print it.)</p>")
    return (f'<img class="{STATIC_CLASS}" alt="figure" style="max-width:100%;height:auto" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


def _anchor_headings(cell: nbformat.NotebookNode, prepared: Prepared) -> None:
    """Give each `##`/`###` heading of a markdown cell a stable anchor for the contents."""
    def anchor(match: re.Match[str]) -> str:
        n = len(prepared.sections) + 1
        prepared.sections.append((f"section-{n}", match.group(2), len(match.group(1))))
        return f'<a id="section-{n}"></a>\n\n{match.group(0)}'
    cell.source = _HEADING.sub(anchor, cell.source)


def prepare_notebook(nb: nbformat.NotebookNode, *, printed: bool = False) -> Prepared:
    """A copy of `nb` whose outputs draw offline, with what the page header needs (`printed`:
    for a page without scripts, figures as their static images)."""
    prepared = Prepared(copy.deepcopy(nb))
    prepared.notebook.metadata.pop("widgets", None)
    for cell in prepared.notebook.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [nbformat.from_dict(o) for o in _static_outputs(cell.get("outputs", []), prepared, printed)]
        elif cell.get("cell_type") == "markdown":
            _anchor_headings(cell, prepared)
    return prepared


_STATUS_STYLE = (
    "<style>.anam-status{font:14px/1.45 system-ui,sans-serif;border:1px solid #d0d5dd;border-radius:6px;"
    "padding:.5em 1em;margin:.5em 0}.anam-status h3{font-size:1em;margin:.2em 0}"
    ".anam-status ul{margin:.3em 0 .2em 1.2em;padding:0}.anam-status li{margin:.15em 0}"
    ".anam-badge{display:inline-block;min-width:5.5em;font-size:.8em;font-weight:700;text-align:center;"
    "border-radius:3px;padding:0 .4em;margin-right:.5em;color:#fff}.anam-badge-new{background:#b42318}"
    ".anam-badge-ongoing{background:#b54708}.anam-badge-resolved{background:#067647}</style>")


def status_section(compared: Sequence[Mapping[str, Any]], previous: str | None = None) -> str:
    """An escaped box saying what changed since the previous run: each finding (from
    `compare_findings`) with a new / ongoing / resolved badge, new ones first."""
    order = {"new": 0, "ongoing": 1, "resolved": 2}
    counts = {status: sum(f.get("status") == status for f in compared) for status in order}
    since = f" ({_html.esc(previous)})" if previous else ""
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    items = "".join(
        f'<li><span class="anam-badge anam-badge-{_html.esc(str(f.get("status")))}">'
        f'{_html.esc(str(f.get("status")).upper())}</span>{_html.esc(f.get("sentence") or f.get("unit") or "")}</li>'
        for f in sorted(compared, key=lambda f: order.get(str(f.get("status")), 3)))
    body = f"<ul>{items}</ul>" if items else "<p>No finding in this run or the previous one.</p>"
    return (f'{_STATUS_STYLE}<section class="anam-status" role="note"><h3>Since the previous run{since}: '
            f"{_html.esc(summary)}</h3>{body}</section>")


def _top(prepared: Prepared, status: str = "") -> str:
    """Status since the previous run, findings callout, data notes and contents: the top of the
    page, escaped."""
    parts = [status] if status else []
    if prepared.findings is not None:
        parts.append(findings_callout(prepared.findings, q=prepared.q or 0.01,
                                      quiet_text=prepared.quiet_text, headline=prepared.headline))
    parts.append(notes_section(sorted(prepared.notes.items(), key=lambda kv: (-kv[1], kv[0]))))
    if len(prepared.sections) >= TOC_MIN_SECTIONS:
        items = "".join(f'<li class="anam-toc-{level}"><a href="#{anchor}">{_html.esc(title)}</a></li>'
                        for anchor, title, level in prepared.sections)
        parts.append(f'<nav class="anam-toc" aria-label="Contents"><strong>Contents</strong><ul>{items}</ul></nav>')
    return callout_style() + "".join(parts)


def render_html(nb: nbformat.NotebookNode | str | Path, *, title: str,
                facts: Iterable[tuple[str, str]] = (), keep_input: bool = False,
                status: str = "", printed: bool = False) -> str:
    """HTML of an executed notebook: header with `facts`, inputs hidden unless `keep_input`.

    Parameters
    ----------
    nb : NotebookNode or path
        The executed notebook.
    title : str
        The page title.
    facts : iterable of (label, value)
        Shown in the header (data window, source, time...).
    keep_input : bool
        Show the code cells.
    status : str
        HTML from `status_section`, shown first at the top (a run compared with a baseline).
    printed : bool
        A page for printing (PDF): no scripts, figures as their static images, a wide page.

    Returns
    -------
    str
        One self-contained HTML page.

    Raises
    ------
    OSError
        When a path cannot be read.
    """
    node = nb if isinstance(nb, nbformat.NotebookNode) else nbformat.read(str(nb), as_version=4)
    prepared = prepare_notebook(node, printed=printed)
    plotlyjs = plotlyjs_script() if not printed and (prepared.figures or _has_figure_divs(prepared.notebook)) else ""
    exporter = HTMLExporter(
        template_name="anam_report",
        extra_template_basedirs=[str(_TEMPLATE_DIR)],
        exclude_input=not keep_input,
        exclude_input_prompt=not keep_input,
        exclude_output_prompt=True,
        embed_images=True,
    )
    resources = {"anam_report": {"title": title, "facts": list(facts), "plotlyjs": plotlyjs,
                                 "top": _top(prepared, status), "printed": printed},
                 "metadata": {"name": title}}
    body, _ = exporter.from_notebook_node(prepared.notebook, resources=resources)
    return body


def _has_figure_divs(nb: nbformat.NotebookNode) -> bool:
    """Static widget HTML may hold figure divs of its own (they need plotly.js too)."""
    return any("plotly-graph-div" in _text(o.get("data", {}).get("text/html", ""))
               for c in nb.cells if c.get("cell_type") == "code" for o in c.get("outputs", []))


def report_notes(nb: nbformat.NotebookNode | str | Path) -> dict[str, int]:
    """The data notes of an executed notebook: each distinct message and how often it came."""
    node = nb if isinstance(nb, nbformat.NotebookNode) else nbformat.read(str(nb), as_version=4)
    return dict(prepare_notebook(node).notes)


def write_report(nb: nbformat.NotebookNode | str | Path, path: str | Path, **kwargs: Any) -> Path:
    """Render `nb` with `render_html` and write it to `path` (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(nb, **kwargs), encoding="utf-8")
    return path
