"""Plotly figures of sessions: sessions frame (or transcript frame) in, `go.Figure` out.

Every figure shares one colour per exit status (`_colors`), shows times in UTC unless a display
time zone is given, escapes every data-derived string (plotly treats <b>, <br>, <a> as markup),
and turns an empty frame into an empty figure with a "no sessions" note.
"""

from __future__ import annotations

import heapq
import html
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from pandas.tseries.frequencies import to_offset
from plotly.subplots import make_subplots

from ..analysis.failures import FailureSpec, is_failure
from ..analysis.outcomes import (
    Sessions,
    check_source,
    columns_of,
    counting_step,
    outcome_counts,
    wall_buckets,
)
from ..analysis.rollouts import rolled_out
from ..data.checks import active_mask, check_frame, check_freq
from ..data.timespan import as_utc
from .colors import ACTIVE_LABEL, KNOWN_STATUS_COLORS, MISSING_LABEL, hashed_color, status_color
from .html import format_duration

__all__ = [
    "session_timeline", "exit_status_over_time", "host_health", "session_detail",
    "duration_distribution", "response_gap_distribution", "latency_over_time",
]

_EPOCH = pd.Timestamp("1970-01-01")
_MS = pd.Timedelta(1, "ms")
_HOVER_TEXT_LIMIT = 300
_ROLE_COLORS = {"user": "#1f77b4", "persona": "#9467bd"}


# ---------------------------------------------------------------- shared helpers

def _zone(tz: str | None) -> ZoneInfo:
    """The display zone (UTC when None); an unknown name raises naming the bad value."""
    if tz is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"tz {tz!r} is not a known time zone; use an IANA name such as 'UTC' or "
            "'Europe/London'") from exc


def _wall(values: Any, zone: ZoneInfo) -> pd.Series:
    """UTC instants as naive wall-clock times in the display zone (what the axis shows)."""
    series = pd.Series(pd.to_datetime(values, utc=True, errors="coerce"))
    return series.dt.tz_convert(zone).dt.tz_localize(None)


def _epoch_ms(wall: pd.Series) -> np.ndarray:
    """Naive wall-clock times as float ms since the epoch (NaN when missing): plotly date axes
    read numbers as ms, and float arrays serialise compactly as typed arrays."""
    return ((wall - _EPOCH) / _MS).to_numpy(dtype=float, na_value=np.nan)


def _ms_text(ms: np.ndarray) -> np.ndarray:
    """ms since epoch → 'YYYY-MM-DD HH:MM:SS' strings (hover text)."""
    out = pd.to_datetime(ms, unit="ms").strftime("%Y-%m-%d %H:%M:%S")
    return np.asarray(out, dtype=object)


def _esc(value: Any) -> str:
    """Escape text for plotly labels and hovers (entities render as text there)."""
    return html.escape(str(value), quote=False)


def _labels(series: pd.Series, missing: str = MISSING_LABEL) -> pd.Series:
    """Category values as plain strings, missing values as a visible placeholder."""
    return series.astype(object).where(series.notna(), missing).map(str)


def _status_labels(series: pd.Series) -> pd.Series:
    return _labels(series, ACTIVE_LABEL)


def _failure_mask(statuses: pd.Series, failures: FailureSpec) -> np.ndarray:
    """Which sessions failed, per `analysis.is_failure`; active sessions never count."""
    return np.asarray(is_failure(statuses, failures), dtype=bool) & statuses.notna().to_numpy()


def _status_order(labels: Iterable[str], failed: set[str]) -> list[str]:
    """Known statuses first in a fixed order, unknown ones sorted, failures last (drawn on top)."""
    known = [s for s in KNOWN_STATUS_COLORS if s in labels]
    unknown = sorted(set(labels) - set(known))
    order = known + unknown
    return [s for s in order if s not in failed] + [s for s in order if s in failed]


def _empty(title: str, note: str = "no sessions") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": note, "showarrow": False, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 16}}])
    return fig


def _note(fig: go.Figure, text: str) -> None:
    """A visible note under the title (sampling, undrawn sessions): nothing is dropped silently."""
    fig.add_annotation(text=_esc(text), showarrow=False, xref="paper", yref="paper", x=0,
                       y=1.0, xanchor="left", yanchor="bottom", font={"size": 11, "color": "#a33"})


def _group_colors(labels: Sequence[str], by: str) -> dict[str, str]:
    if by == "exit_status":
        return {label: status_color(label) for label in labels}
    return {label: hashed_color(label) for label in labels}


# ---------------------------------------------------------------- session timeline

def _pack_tracks(lanes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assign overlapping sessions of one lane to separate tracks (greedy interval packing).

    Returns each session's track and its lane's track count, so bars never hide each other.
    """
    track = np.zeros(len(lanes), dtype=np.int64)
    count = np.ones(len(lanes), dtype=np.int64)
    order = np.lexsort((starts, lanes))
    boundaries = np.flatnonzero(np.diff(lanes[order])) + 1
    for group in np.split(order, boundaries):
        free: list[int] = []
        busy: list[tuple[float, int]] = []
        used = 0
        for i in group:
            while busy and busy[0][0] <= starts[i]:
                heapq.heappush(free, heapq.heappop(busy)[1])
            slot = heapq.heappop(free) if free else used
            used = max(used, slot + 1)
            track[i] = slot
            heapq.heappush(busy, (ends[i], slot))
        count[group] = used
    return track, count


def session_timeline(df: pd.DataFrame, by: str = "engine_pod", color: str = "exit_status",
                     failures: FailureSpec = None, tz: str | None = None,
                     now: Any = None, max_sessions: int = 50_000) -> go.Figure:
    """One bar per session from start to end, in lanes by `by`, coloured by `color`.

    Active sessions run to `now` (default: the current time) and end in a ▶ marker. Built from
    one WebGL line trace per colour with gaps between sessions, so 20,000 sessions stay
    responsive; past `max_sessions`, failures and active sessions are all kept, the rest are
    sampled, and a note on the figure says so.

    Parameters
    ----------
    df : pandas.DataFrame
        A sessions frame (from `fetch_sessions` or `sessions_frame`).
    by : str
        The column whose values are the lanes (engine_pod, engine_version, client_label...).
    color : str
        The column that colours the bars; exit statuses get their fixed colours.
    failures : collection of str, callable or None
        Which exit statuses count as failures (see `analysis.is_failure`); None is the
        default rule (ERROR and any status containing ERROR or FAIL).
    tz : str, optional
        IANA time zone for the axis and hovers (e.g. "Europe/London"); UTC when None.
    now : datetime or str, optional
        Where active sessions end; the current time when None (naive means UTC).
    max_sessions : int
        Above this many sessions the rest is sampled (failures and active sessions kept).

    Returns
    -------
    plotly.graph_objects.Figure
        WebGL traces, one per colour value, with hover text escaped.

    Raises
    ------
    ValueError
        A needed column is missing (the message lists the frame's columns), or `tz` is not a
        known time zone.
    TypeError
        `df` is not a DataFrame.
    """
    check_frame(df, ["start_time", "exit_status", by, color])
    if max_sessions < 1:
        raise ValueError(f"max_sessions must be a positive integer, got {max_sessions!r}")
    zone = _zone(tz)
    title = f"Sessions by {by}"
    notes: list[str] = []
    placed = df[df["start_time"].notna()]
    if len(placed) < len(df):
        notes.append(f"{len(df) - len(placed)} sessions without a start time are not drawn")
    if placed.empty:
        return _empty(title)

    failed = _failure_mask(placed["exit_status"], failures)
    active = active_mask(placed)
    if len(placed) > max_sessions:
        keep = failed | active
        rest = np.flatnonzero(~keep)
        room = max(max_sessions - int(keep.sum()), 0)
        rng = np.random.default_rng(0)
        keep[rng.choice(rest, size=min(room, len(rest)), replace=False)] = True
        notes.append(f"showing {int(keep.sum())} of {len(placed)} sessions: every failure and "
                     f"active session, the rest sampled (max_sessions={max_sessions})")
        placed, failed, active = placed[keep], failed[keep], active[keep]

    now_ts = pd.Timestamp.now(tz="UTC") if now is None else as_utc(now)
    start_utc = pd.to_datetime(placed["start_time"], utc=True)
    end_utc = pd.to_datetime(placed["end_time"], utc=True) if "end_time" in placed else None
    if end_utc is None:
        end_utc = pd.Series(pd.NaT, index=placed.index, dtype="datetime64[ns, UTC]")
    if "duration" in placed.columns:
        end_utc = end_utc.fillna(start_utc + pd.to_timedelta(placed["duration"]))
    end_utc = end_utc.where(~active, now_ts).fillna(now_ts)
    starts = _epoch_ms(_wall(start_utc, zone))
    ends = np.maximum(_epoch_ms(_wall(end_utc, zone)), starts)

    lane_labels = _labels(placed[by]).to_numpy()
    lanes = sorted(set(lane_labels) - {MISSING_LABEL}) + (
        [MISSING_LABEL] if MISSING_LABEL in set(lane_labels) else [])
    lane_index = pd.Index(lanes).get_indexer(lane_labels)
    track, tracks = _pack_tracks(lane_index, starts, ends)
    y = (lane_index + ((track + 0.5) / tracks - 0.5) * 0.8).astype(np.float32)

    groups = (_status_labels(placed[color]) if color == "exit_status" else _labels(placed[color])).to_numpy()
    failed_groups = set(groups[failed]) if color == "exit_status" else set()
    order = (_status_order(set(groups), failed_groups) if color == "exit_status"
             else sorted(set(groups)))
    colors = _group_colors(order, color)

    duration_text = np.array([format_duration(pd.Timedelta(ms, "ms")) for ms in ends - starts],
                             dtype=object)
    duration_text[active] = duration_text[active] + " (active)"
    custom = np.column_stack([
        placed.index.astype(str).map(_esc).to_numpy(dtype=object),
        _labels(placed["client_label"]).map(_esc).to_numpy() if "client_label" in placed
        else np.full(len(placed), MISSING_LABEL, dtype=object),
        duration_text,
        _labels(placed["engine_version"]).map(_esc).to_numpy() if "engine_version" in placed
        else np.full(len(placed), MISSING_LABEL, dtype=object),
        np.array([_esc(v) for v in lane_labels], dtype=object),
        _ms_text(starts),
    ])
    # Status is the trace name when colouring by it; otherwise it rides in customdata too.
    status_field = "%{fullData.name}"
    if color != "exit_status":
        custom = np.column_stack([custom, [_esc(v) for v in _status_labels(placed["exit_status"])]])
        status_field = "%{customdata[6]}"
    hover = ("<b>%{customdata[0]}</b><br>label: %{customdata[1]}<br>status: " + status_field
             + "<br>start: %{customdata[5]}<br>duration: %{customdata[2]}"
             f"<br>version: %{{customdata[3]}}<br>{_esc(by)}: %{{customdata[4]}}<extra></extra>")

    fig = go.Figure()
    for name in order:
        sel = np.flatnonzero(groups == name)
        xs = np.column_stack([starts[sel], ends[sel], np.full(len(sel), np.nan)]).ravel()
        ys = np.column_stack([y[sel], y[sel], np.full(len(sel), np.nan, np.float32)]).ravel()
        label = _esc(name)
        fig.add_trace(go.Scattergl(
            x=xs, y=ys, mode="lines", name=f"{label} ({len(sel)})", legendgroup=label,
            line={"color": colors[name], "width": 4}, hoverinfo="skip", connectgaps=False))
        fig.add_trace(go.Scattergl(
            x=(starts[sel] + ends[sel]) / 2, y=y[sel], mode="markers", name=label,
            legendgroup=label, showlegend=False, customdata=custom[sel], hovertemplate=hover,
            marker={"color": colors[name], "size": 6, "opacity": 0}))
    if active.any():
        fig.add_trace(go.Scattergl(
            x=ends[active], y=y[active], mode="markers", name=f"still active ({int(active.sum())})",
            hoverinfo="skip",
            marker={"symbol": "triangle-right", "size": 9, "color": KNOWN_STATUS_COLORS[ACTIVE_LABEL]}))
        fig.add_vline(x=float(_epoch_ms(_wall(pd.Series([now_ts]), zone))[0]), line_dash="dot",
                      line_color="#555", annotation_text="now")

    fig.update_layout(
        title=f"{title} ({len(placed)} sessions)", hovermode="closest",
        height=min(max(320, 90 + 28 * len(lanes)), 2400), legend_title_text=_esc(color),
        xaxis={"type": "date", "title": f"start → end ({zone.key})"},
        yaxis={"title": _esc(by), "tickmode": "array", "tickvals": list(range(len(lanes))),
               "ticktext": [_esc(lane) for lane in lanes], "range": [len(lanes) - 0.5, -0.5],
               "zeroline": False, "showgrid": False})
    fig.update_layout(shapes=list(fig.layout.shapes) + [
        {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": b + 0.5,
         "y1": b + 0.5, "line": {"width": 1, "color": "#e5e5e5"}, "layer": "below"}
        for b in range(len(lanes) - 1)])
    if notes:
        _note(fig, "; ".join(notes))
    return fig


# ---------------------------------------------------------------- exit statuses over time

def _mark_rollouts(fig: go.Figure, df: Sessions, zone: ZoneInfo, freq: str) -> None:
    """A dotted line where each engine version was rolled out inside the window, by the one
    definition `analysis.rollouts` uses (a version already serving as the window opens is not
    a rollout seen here)."""
    if "engine_version" not in columns_of(df) or "start_time" not in columns_of(df):
        return
    for version, first in rolled_out(df, freq).items():
        at = _wall(pd.Series([first]), zone).iloc[0]
        fig.add_vline(x=at, line_dash="dot", line_color="#444", line_width=1)
        fig.add_annotation(x=at, y=1.0, xref="x", yref="paper", yanchor="bottom",
                           text=f"{_esc(str(version))} rolled out", showarrow=False,
                           textangle=-30, font={"size": 10})


def exit_status_over_time(df: Sessions, freq: str = "1h", failures: FailureSpec = None,
                          tz: str | None = None) -> go.Figure:
    """Stacked session counts per exit status per bucket, the failure rate beneath, and a dotted
    line where each engine version was rolled out inside the window (`analysis.rollouts`).

    Parameters
    ----------
    df : pandas.DataFrame or SessionDataset
        A sessions frame (from `fetch_sessions` or `sessions_frame`), or a dataset (from
        `session_dataset`: its engine counts the cells; the same figure as its frame).
    freq : str
        The bucket size, a fixed pandas offset such as "15min", "1h" or "1D".
    failures : collection of str, callable or None
        Which exit statuses count as failures (see `analysis.is_failure`); None is the
        default rule (ERROR and any status containing ERROR or FAIL).
    tz : str, optional
        IANA time zone for the axis and hovers (e.g. "Europe/London"); UTC when None.

    Returns
    -------
    plotly.graph_objects.Figure
        Stacked bars above the failure rate (%), sharing the time axis.

    Raises
    ------
    ValueError
        A needed column is missing (the message lists the frame's columns), `freq` is not a
        fixed time span, or `tz` is not a known time zone.
    TypeError
        `df` is neither a DataFrame nor a SessionDataset.
    """
    check_source(df, ["start_time", "exit_status"])
    zone, step = _zone(tz), check_freq(freq)
    title = f"Exit statuses per {freq}"
    placed = outcome_counts(df, (), step=counting_step(step, zone.key == "UTC"))
    placed = placed[placed["bucket"].notna()]
    if placed.empty:
        return _empty(title)
    bucket = wall_buckets(placed["bucket"], zone, step)
    statuses = _status_labels(placed["exit_status"])
    n = placed["n"]
    failed = pd.Series(_failure_mask(placed["exit_status"], failures), index=placed.index)
    finished = placed["exit_status"].notna()

    counts = pd.crosstab(bucket, statuses, values=n, aggfunc="sum").fillna(0).astype(np.int64).sort_index()
    fail_n = (n * failed).groupby(bucket).sum().reindex(counts.index, fill_value=0)
    done_n = (n * finished).groupby(bucket).sum().reindex(counts.index, fill_value=0)
    rate = (fail_n / done_n.where(done_n > 0)).to_numpy(dtype=float, na_value=np.nan)
    failed_names = set(statuses[failed.to_numpy()])

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32],
                        vertical_spacing=0.06)
    x = counts.index
    totals = counts.sum(axis=1).to_numpy()
    for name in _status_order(set(counts.columns), failed_names):
        label = _esc(name)
        fig.add_trace(go.Bar(
            x=x, y=counts[name].to_numpy(), name=label, marker_color=status_color(name),
            customdata=totals, legendgroup=label,
            hovertemplate="%{fullData.name}: %{y} of %{customdata} sessions<br>%{x}<extra></extra>"),
            row=1, col=1)
    fig.add_trace(go.Scatter(
        x=x, y=rate * 100, mode="lines+markers", name="failure rate", line={"color": "#d62728"},
        customdata=np.column_stack([fail_n.to_numpy(), done_n.to_numpy()]),
        hovertemplate=("failure rate %{y:.1f}%<br>%{customdata[0]} failed of %{customdata[1]}"
                       " finished<br>%{x}<extra></extra>")), row=2, col=1)

    _mark_rollouts(fig, df, zone, freq)
    fig.update_layout(title=title, barmode="stack", bargap=0.05, hovermode="closest",
                      legend_title_text="exit status", margin={"t": 110})
    fig.update_yaxes(title_text="sessions", row=1, col=1)
    fig.update_yaxes(title_text="failure rate (%)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text=f"session start ({zone.key})", row=2, col=1)
    return fig


# ---------------------------------------------------------------- host health

def host_health(df: Sessions, by: str = "engine_pod", freq: str = "1h",
                failures: FailureSpec = None, tz: str | None = None,
                min_sessions: int = 5) -> go.Figure:
    """Failure rate per lane × time bucket, worst lanes on top.

    Cells with fewer than `min_sessions` finished sessions are greyed out (their rate is noise:
    one failure in two sessions is not an outage); every cell's hover gives n and failures, and
    the session count is written in the cells when the grid is small enough to read.

    Parameters
    ----------
    df : pandas.DataFrame or SessionDataset
        A sessions frame (from `fetch_sessions` or `sessions_frame`), or a dataset (from
        `session_dataset`: its engine counts the cells; the same figure as its frame).
    by : str
        The column whose values are the rows (engine_pod, engine_replicaset, tts_provider...).
    freq : str
        The bucket size, a fixed pandas offset such as "15min", "1h" or "1D".
    failures : collection of str, callable or None
        Which exit statuses count as failures (see `analysis.is_failure`); None is the
        default rule (ERROR and any status containing ERROR or FAIL).
    tz : str, optional
        IANA time zone for the axis and hovers (e.g. "Europe/London"); UTC when None.
    min_sessions : int
        Cells with fewer finished sessions are greyed out.

    Returns
    -------
    plotly.graph_objects.Figure
        A heatmap of failure rate (%), rows sorted worst first.

    Raises
    ------
    ValueError
        A needed column is missing (the message lists the frame's columns), `freq` is not a
        fixed time span, or `tz` is not a known time zone.
    TypeError
        `df` is neither a DataFrame nor a SessionDataset.
    """
    check_source(df, ["start_time", "exit_status", by])
    if min_sessions < 1:
        raise ValueError(f"min_sessions must be a positive integer, got {min_sessions!r}")
    zone, step = _zone(tz), check_freq(freq)
    title = f"Failure rate by {by} per {freq}"
    done = outcome_counts(df, [by], step=counting_step(step, zone.key == "UTC"))
    done = done[done["bucket"].notna() & done["exit_status"].notna()]
    if done.empty:
        return _empty(title, "no finished sessions")
    grid = pd.DataFrame({"lane": _labels(done[by]), "bucket": wall_buckets(done["bucket"], zone, step),
                         "n": done["n"], "f": done["n"] * _failure_mask(done["exit_status"], failures)})
    n = grid.pivot_table(index="lane", columns="bucket", values="n", aggfunc="sum", fill_value=0)
    f = grid.pivot_table(index="lane", columns="bucket", values="f", aggfunc="sum",
                         fill_value=0).reindex_like(n).fillna(0)
    order = pd.DataFrame({"f": f.sum(axis=1), "n": n.sum(axis=1)})
    order = order.sort_values(["f", "n"], ascending=[False, False], kind="stable").index
    n, f = n.loc[order], f.loc[order]
    n_arr, f_arr = n.to_numpy(dtype=float), f.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = f_arr / n_arr
    enough = n_arr >= min_sessions
    thin = (n_arr > 0) & ~enough
    fleet = float(f_arr.sum() / n_arr.sum())

    y = [_esc(v) for v in n.index]
    x = list(n.columns)
    custom = np.dstack([n_arr, f_arr, np.nan_to_num(rate * 100)])
    text = np.where(n_arr > 0, n_arr.astype(int).astype(str), "")
    show_text = n_arr.size <= 600
    hover = (f"{_esc(by)}: %{{y}}<br>%{{x}}<br>%{{customdata[1]:.0f}} failed of "
             "%{customdata[0]:.0f} sessions (%{customdata[2]:.1f}%)<extra>%{fullData.name}</extra>")
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        x=x, y=y, z=np.where(thin, 1.0, np.nan), name=f"fewer than {min_sessions} sessions",
        colorscale=[[0, "#d9d9d9"], [1, "#d9d9d9"]], showscale=False, customdata=custom,
        hovertemplate=hover, text=text, texttemplate="%{text}" if show_text else None,
        xgap=1, ygap=1))
    fig.add_trace(go.Heatmap(
        x=x, y=y, z=np.where(enough, rate, np.nan), name="failure rate", zmin=0, zmax=1,
        colorscale=[[0, "#f7fcf5"], [0.05, "#fee0d2"], [0.3, "#fb6a4a"], [1, "#67000d"]],
        colorbar={"title": "failure rate", "tickformat": ".0%"}, customdata=custom,
        hovertemplate=hover, text=text, texttemplate="%{text}" if show_text else None,
        xgap=1, ygap=1))
    fig.update_layout(
        title=f"{title} (fleet {fleet:.1%}; grey: fewer than {min_sessions} sessions)",
        height=min(max(320, 120 + 24 * len(y)), 2400),
        xaxis={"type": "date", "title": f"session start ({zone.key})"},
        yaxis={"type": "category", "autorange": "reversed", "title": _esc(by)})
    return fig


# ---------------------------------------------------------------- session detail

def session_detail(transcript_df: pd.DataFrame, session: Any = None, tz: str | None = None) -> go.Figure:
    """One session's turns on a time axis (user vs persona, speaking time, interruptions) above
    its lifecycle (start → end, coloured by exit status).

    `session` is the session record (API dict) or its row of the sessions frame; without it the
    lifecycle is inferred from the transcript's own times.

    Parameters
    ----------
    transcript_df : pandas.DataFrame
        One session's messages, from `transcript_frame`.
    session : dict or pandas.Series, optional
        The session record (API dict) or its row of the sessions frame.
    tz : str, optional
        IANA time zone for the axis and hovers (e.g. "Europe/London"); UTC when None.

    Returns
    -------
    plotly.graph_objects.Figure
        Turns above the lifecycle; message text in hovers is escaped and clipped.

    Raises
    ------
    ValueError
        A transcript column is missing, or `tz` is not a known time zone.
    TypeError
        `transcript_df` is not a DataFrame.
    """
    check_frame(transcript_df, ["role", "text", "timestamp", "speaking_duration", "interrupted"])
    zone = _zone(tz)
    life = _lifecycle(session)
    title = "Session " + _esc(life["id"]) if life["id"] else "Session transcript"
    turns = transcript_df[transcript_df["timestamp"].notna()]
    if turns.empty and life["start"] is None:
        return _empty(title, "no transcript messages")

    fig = go.Figure()
    if not turns.empty:
        start = _epoch_ms(_wall(turns["timestamp"], zone))
        speak = pd.to_timedelta(turns["speaking_duration"]).dt.total_seconds().fillna(0)
        speak = speak.clip(lower=0).to_numpy() * 1000
        roles = _labels(turns["role"]).to_numpy()
        interrupted = turns["interrupted"].fillna(False).astype(bool).to_numpy()
        texts = np.array([_esc(_clip(t)) for t in _labels(turns["text"], "")], dtype=object)
        for role in sorted(set(roles), key=lambda r: (r != "user", r != "persona", r)):
            sel = roles == role
            fig.add_trace(go.Bar(
                y=[_esc(role)] * int(sel.sum()), x=np.maximum(speak[sel], 300), base=start[sel],
                orientation="h", name=_esc(role), marker_color=_ROLE_COLORS.get(role) or hashed_color(role),
                customdata=np.column_stack([texts[sel], speak[sel] / 1000,
                                            np.where(interrupted[sel], "yes", "no"),
                                            _ms_text(start[sel])]),
                hovertemplate=("%{customdata[3]}<br>speaking %{customdata[1]:.1f}s, interrupted: "
                               "%{customdata[2]}<br>%{customdata[0]}<extra>%{fullData.name}</extra>")))
        if interrupted.any():
            fig.add_trace(go.Scatter(
                x=start[interrupted] + speak[interrupted], y=[_esc(r) for r in roles[interrupted]],
                mode="markers", name="interrupted", marker={"symbol": "x", "size": 11,
                                                             "color": "#d62728"},
                hovertemplate="interrupted<extra></extra>"))
    if life["start"] is not None:
        status = life["status"]
        begin = _epoch_ms(_wall(pd.Series([life["start"]]), zone))[0]
        end_ts = life["end"]
        if end_ts is None and not turns.empty:
            end_ts = pd.to_datetime(turns["timestamp"], utc=True).max()
        end = _epoch_ms(_wall(pd.Series([end_ts]), zone))[0] if end_ts is not None else begin
        end = max(end, begin)
        shown = status if status is not None else ACTIVE_LABEL
        fig.add_trace(go.Bar(
            y=["session"], x=[max(end - begin, 300)], base=[begin], orientation="h",
            name=_esc(shown), marker_color=status_color(status), opacity=0.6,
            # data goes in as trace name, never into the template text (it could hold "%{")
            hovertemplate=("start %{base|%Y-%m-%d %H:%M:%S}<br>exit status: %{fullData.name}"
                           f"<br>duration: {_esc(format_duration(pd.Timedelta(end - begin, 'ms')))}"
                           "<extra>lifecycle</extra>")))
        fig.add_trace(go.Scatter(
            x=[begin, end], y=["session", "session"], mode="markers+text",
            text=["start", _esc(shown)], textposition="top center", showlegend=False,
            marker={"symbol": ["line-ns", "diamond"], "size": 12, "color": status_color(status),
                    "line": {"width": 2, "color": status_color(status)}}, hoverinfo="skip"))
    fig.update_layout(
        title=title, barmode="overlay", hovermode="closest", height=320,
        xaxis={"type": "date", "title": f"time ({zone.key})"},
        yaxis={"type": "category", "categoryorder": "array",
               "categoryarray": ["session", "persona", "user"]})
    return fig


def _clip(text: str) -> str:
    """Hover text is a glimpse; the transcript table keeps every message whole."""
    return text if len(text) <= _HOVER_TEXT_LIMIT else text[:_HOVER_TEXT_LIMIT] + "…"


def _lifecycle(session: Any) -> dict[str, Any]:
    """Start, end, exit status and id from an API record (camelCase) or a sessions-frame row."""
    if session is None:
        return {"id": None, "start": None, "end": None, "status": None}
    if isinstance(session, pd.Series):
        get = session.get
        sid = session.name if session.name is not None else session.get("id")
        keys = ("start_time", "end_time", "exit_status")
    elif isinstance(session, dict):
        get = session.get
        sid = session.get("id")
        keys = ("startTime", "endTime", "exitStatus")
    else:
        raise TypeError(f"session must be an API record (dict) or a sessions-frame row (Series), "
                        f"got {type(session).__name__}")

    def stamp(value: Any) -> pd.Timestamp | None:
        ts = pd.to_datetime(value, utc=True, errors="coerce") if value is not None else pd.NaT
        return None if pd.isna(ts) else ts

    status = get(keys[2])
    status = None if status is None or (not isinstance(status, str) and pd.isna(status)) else str(status)
    return {"id": None if sid is None else str(sid), "start": stamp(get(keys[0])),
            "end": stamp(get(keys[1])), "status": status}


# ---------------------------------------------------------------- duration distribution

def duration_distribution(df: pd.DataFrame, by: str = "engine_version") -> go.Figure:
    """Box plot of finished sessions' durations (minutes) per value of `by`, with n in names.

    Parameters
    ----------
    df : pandas.DataFrame
        A sessions frame (from `fetch_sessions` or `sessions_frame`).
    by : str
        The column to group by (engine_version, exit_status, llm_model...).

    Returns
    -------
    plotly.graph_objects.Figure
        One box per group; an empty figure with a note when no session has finished.

    Raises
    ------
    ValueError
        A needed column is missing (the message lists the frame's columns), or neither
        `duration` nor `session_length_ms` is there.
    TypeError
        `df` is not a DataFrame.
    """
    check_frame(df, [by])
    if "duration" in df.columns:
        minutes = pd.to_timedelta(df["duration"]).dt.total_seconds() / 60
    else:
        check_frame(df, ["session_length_ms"])
        minutes = pd.to_numeric(df["session_length_ms"], errors="coerce").astype(float) / 60000
    title = f"Session duration by {by}"
    keep = minutes.notna()
    if not keep.any():
        return _empty(title, "no finished sessions")
    labels = (_status_labels(df[by]) if by == "exit_status" else _labels(df[by]))[keep]
    minutes = minutes[keep].astype(float)
    names = sorted(set(labels))
    colors = _group_colors(names, by)
    fig = go.Figure()
    for name in names:
        values = minutes[labels == name].to_numpy()
        fig.add_trace(go.Box(
            y=values, name=f"{_esc(name)} (n={len(values)})", marker_color=colors[name],
            boxpoints="outliers",
            hovertemplate="%{y:.1f} min<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, showlegend=False, yaxis={"title": "duration (minutes)"},
                      xaxis={"type": "category", "title": _esc(by)})
    return fig


# ---------------------------------------------------------------- response latency

_GAP_AXIS = "response gap (s): user stops → persona starts"


def _gaps_with(turns: pd.DataFrame, sessions: pd.DataFrame | None, by: str | None) -> pd.DataFrame:
    """Answers with a gap: gap (s), time and, when asked, the session's `by` label."""
    check_frame(turns, ["session_id", "response_gap"])
    gap = pd.to_numeric(turns["response_gap"], errors="coerce").astype(float)
    out = pd.DataFrame({"gap": gap.to_numpy(), "session": turns["session_id"].astype(object).to_numpy(),
                        "time": turns["timestamp"].to_numpy() if "timestamp" in turns.columns else pd.NaT})
    out = out[out["gap"].notna()]
    if by is not None and sessions is not None:
        check_frame(sessions, [by])
        labels = _labels(sessions[by][~sessions.index.duplicated()])
        labels.index = labels.index.astype(str)
        out["group"] = labels.reindex(out["session"].astype(str)).fillna(MISSING_LABEL).to_numpy()
    return out


def response_gap_distribution(turns: pd.DataFrame, sessions: pd.DataFrame,
                              by: str = "engine_version") -> go.Figure:
    """ECDF of the response gap per value of `by`: how many answers (y) came within x seconds.

    A curve to the right is a slower group; negative gaps (overlaps) sit left of the dotted zero
    line. Names carry answers and sessions, so a curve drawn from few sessions shows it.

    Parameters
    ----------
    turns
        A turns frame from `fetch_transcripts`.
    sessions
        The sessions frame holding `by`, indexed by session id.
    by
        The session attribute to split by; missing values are drawn as "(missing)".

    Returns
    -------
    plotly.graph_objects.Figure
        One step line per group (labels escaped), or a figure saying there is nothing to draw.

    Raises
    ------
    ValueError
        When a frame lacks the needed columns.
    """
    title = f"Response gap by {by}"
    answers = _gaps_with(turns, sessions, by)
    if answers.empty:
        return _empty(title, "no persona answers with a known gap")
    fig = go.Figure()
    for name in sorted(set(answers["group"])):
        mine = answers[answers["group"] == name]
        x = np.sort(mine["gap"].to_numpy())
        y = np.arange(1, len(x) + 1) / len(x)
        if len(x) > 2000:  # the curve's shape needs no more points than a screen has
            keep = np.unique(np.linspace(0, len(x) - 1, 2000).astype(np.int64))
            x, y = x[keep], y[keep]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", line={"shape": "hv", "color": hashed_color(name)},
            name=f"{_esc(name)} ({len(mine):,} answers, {mine['session'].nunique():,} sessions)",
            hovertemplate="%{y:.0%} of answers within %{x:.2f} s<extra>%{fullData.name}</extra>"))
    fig.add_vline(x=0, line_dash="dot", line_color="#444", line_width=1)
    high = float(np.quantile(answers["gap"], 0.995))
    fig.update_layout(title=title, legend_title_text=_esc(by), hovermode="closest",
                      xaxis={"title": _GAP_AXIS, "range": [min(-1.0, float(answers["gap"].min())), high * 1.05]},
                      yaxis={"title": "share of answers", "tickformat": ".0%", "range": [0, 1.02]})
    return fig


def latency_over_time(turns: pd.DataFrame, sessions: pd.DataFrame | None = None, freq: str = "1h",
                      tz: str | None = None) -> go.Figure:
    """p50 and p90 of the response gap per time bucket (by answer time), with a dotted line
    where each engine version was rolled out inside the window (`analysis.rollouts`).

    Parameters
    ----------
    turns
        A turns frame from `fetch_transcripts`.
    sessions
        The sessions frame, for the rollout markers (None: no markers).
    freq
        The bucket, a fixed pandas offset such as "15min", "1h" or "1D".
    tz
        Display time zone (an IANA name), None for UTC.

    Returns
    -------
    plotly.graph_objects.Figure
        The p50 and p90 lines, hover showing how many answers each point rests on.

    Raises
    ------
    ValueError
        For a bad `freq` or `tz`, or a frame lacking the needed columns.
    """
    zone, offset = _zone(tz), to_offset(check_freq(freq))
    title = f"Response gap p50 / p90 per {freq}"
    answers = _gaps_with(turns, sessions, None)
    answers = answers[pd.notna(answers["time"])]
    if answers.empty:
        return _empty(title, "no persona answers with a known gap and time")
    bucket = _wall(answers["time"], zone).dt.floor(offset)
    bucket.index = answers.index
    grouped = answers["gap"].groupby(bucket)
    summary = pd.DataFrame({"p50": grouped.median(), "p90": grouped.quantile(0.9),
                            "n": grouped.size()}).sort_index()
    fig = go.Figure()
    for column, color in (("p50", "#1f77b4"), ("p90", "#ff7f0e")):
        fig.add_trace(go.Scatter(
            x=summary.index, y=summary[column].to_numpy(), mode="lines+markers", name=column,
            line={"color": color}, customdata=summary["n"].to_numpy(),
            hovertemplate=f"{column} %{{y:.2f}} s of %{{customdata}} answers<br>%{{x}}<extra></extra>"))
    if sessions is not None:
        _mark_rollouts(fig, sessions, zone, freq)
    fig.update_layout(title=title, hovermode="closest", margin={"t": 110},
                      xaxis={"title": f"answer time ({zone.key})"},
                      yaxis={"title": "response gap (s)", "rangemode": "tozero"})
    return fig
