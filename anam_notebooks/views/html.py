"""Static HTML pieces (tables, cards, messages, figure divs) with every data value escaped.

Everything shown comes from hostile data: `esc` is the only way a value reaches markup here.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import plotly.graph_objects as go

MISSING = "—"

_STYLE = (
    "<style>"
    ".anam-table{border-collapse:collapse;font:12px/1.4 sans-serif;margin:4px 0}"
    # The doubled class outranks JupyterLab's right-aligned `.jp-RenderedHTMLCommon td` rule.
    "table.anam-table.anam-table th,table.anam-table.anam-table td{border:1px solid #ddd;"
    "padding:2px 6px;text-align:left;"
    "vertical-align:top;white-space:pre-wrap;max-width:40em;overflow-wrap:anywhere}"
    # Headers never break inside a word ("speaking_duratio/n"): they wrap at spaces only.
    "table.anam-table.anam-table th{background:#f4f4f4;overflow-wrap:normal;word-break:keep-all;"
    "white-space:nowrap}"
    ".anam-card{border:1px solid #ccc;border-left:6px solid var(--accent,#888);padding:6px 10px;"
    "font:13px/1.5 sans-serif;margin:4px 0}"
    ".anam-card dl{display:grid;grid-template-columns:max-content 1fr;gap:0 1em;margin:2px 0}"
    ".anam-card dl>dt{font-weight:bold;margin:0;padding:0;float:none;white-space:nowrap}"
    ".anam-card dl>dd{margin:0;padding:0;overflow-wrap:anywhere}"
    ".anam-msg{padding:4px 8px;font:13px sans-serif;margin:4px 0;border-radius:3px}"
    ".anam-msg-error{background:#fdecea;color:#611a15}"
    ".anam-msg-warning{background:#fff4e5;color:#663c00}"
    ".anam-msg-info{background:#e8f4fd;color:#0d3c61}"
    "</style>"
)


def style() -> str:
    """The stylesheet the pieces below rely on (include once per rendering)."""
    return _STYLE


def is_missing(value: Any) -> bool:
    """True for None, NaN, NaT and pd.NA; never raises on odd values."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if not pd.api.types.is_scalar(value):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_duration(value: Any) -> str:
    """A timedelta as `1h 02m 03s` (or `4.2s` under a minute); missing → an em dash."""
    if is_missing(value):
        return MISSING
    seconds = pd.Timedelta(value).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_time(value: Any) -> str:
    """A time to the second with its zone named: `2026-04-20 09:00:05 UTC` (naive means UTC)."""
    if is_missing(value):
        return MISSING
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    zone = getattr(stamp.tzinfo, "key", None) or stamp.tzname() or "UTC"
    return f"{stamp:%Y-%m-%d %H:%M:%S} {'UTC' if zone in ('UTC', 'Etc/UTC', 'Z') else zone}"


def format_value(value: Any) -> str:
    """Plain text for one cell: timestamps in ISO form, durations readable, missing as a dash."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return format_time(value)
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return format_duration(value)
    return str(value)


def esc(value: Any) -> str:
    """Escaped text of any value, safe inside element content and attribute values."""
    return html.escape(format_value(value), quote=True)


def table(frame: pd.DataFrame, *, columns: Iterable[str] | None = None, max_rows: int | None = None,
          index: bool = True, caption: str | None = None) -> str:
    """An escaped HTML table; a note says how many rows were left out, never silently."""
    cols = list(columns) if columns is not None else list(frame.columns)
    shown = frame if max_rows is None else frame.iloc[:max_rows]
    head = "".join(f"<th>{esc(c)}</th>" for c in ([frame.index.name or ""] if index else []) + cols)
    rows = []
    values = shown[cols].astype(object).to_numpy() if cols else [[] for _ in range(len(shown))]
    for label, row in zip(shown.index, values):
        cells = ([f"<th>{esc(label)}</th>"] if index else []) + [f"<td>{esc(v)}</td>" for v in row]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts = ['<table class="anam-table">']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    if len(shown) < len(frame):
        parts.append(message(f"showing {len(shown)} of {len(frame)} rows", kind="info"))
    return "".join(parts)


def card(title: str, fields: Mapping[str, Any], *, accent: str = "#888") -> str:
    """A titled definition list (a session summary); `accent` colours the left border."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in fields.items())
    return (f'<div class="anam-card" style="--accent:{esc(accent)}">'
            f"<strong>{esc(title)}</strong><dl>{items}</dl></div>")


def message(text: str, *, kind: str = "error") -> str:
    """An inline message box: kind is error, warning or info."""
    if kind not in ("error", "warning", "info"):
        raise ValueError(f"message kind {kind!r} is not one of 'error', 'warning', 'info'")
    return f'<div class="anam-msg anam-msg-{kind}" role="status">{esc(text)}</div>'


def pre(text: str) -> str:
    """Preformatted escaped text (a JSON snapshot, a long prompt)."""
    return f'<pre style="white-space:pre-wrap;overflow-wrap:anywhere">{esc(text)}</pre>'


def link(url: str, text: str) -> str:
    """An anchor for an http(s) URL opening in a new tab; other schemes show as plain text."""
    scheme = urlsplit(str(url)).scheme.lower()
    if scheme not in ("http", "https"):
        return esc(text) + " " + esc(url)
    return f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{esc(text)}</a>'


def figure_div(fig: go.Figure) -> str:
    """A figure as a div + script that expects plotly.js already on the page (embedded once)."""
    return fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
