"""Figures built from simulator data: traces, lanes, colours, hover counts, escaping, edge cases."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from anam_notebooks import analysis, plots
from anam_notebooks.analysis import is_failure
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.data.transcripts import transcript_frame
from anam_notebooks.views.colors import KNOWN_STATUS_COLORS, PALETTE, hashed_color, status_color

HOSTILE = "<img src=x onerror=alert(1)>"
NOW = pd.Timestamp("2026-04-20T12:00Z")


@pytest.fixture(scope="module")
def df(fleet) -> pd.DataFrame:
    return sessions_frame(fleet.sessions)


@pytest.fixture(scope="module")
def hostile_df(fleet) -> pd.DataFrame:
    """A few sessions whose label, pod and status are markup."""
    records = [dict(r) for r in fleet.sessions[:40]]
    for r in records[:10]:
        r["clientLabel"] = HOSTILE
        r["exitStatus"] = "<b>FAIL</b>"
    frame = sessions_frame(records)
    frame["engine_pod"] = frame["engine_pod"].cat.add_categories([HOSTILE])
    frame.loc[frame.index[:5], "engine_pod"] = HOSTILE
    return frame


def _figure_json(fig: go.Figure) -> str:
    return fig.to_json()


def _trace(fig: go.Figure, name: str):
    return next(t for t in fig.data if t.name == name)


# ---------------------------------------------------------------- session timeline

def test_timeline_draws_every_session_once_in_its_status_colour(df):
    fig = plots.session_timeline(df, now=NOW)
    lines = [t for t in fig.data if t.mode == "lines"]
    counts = {t.legendgroup: int(t.name.rsplit("(", 1)[1].rstrip(")")) for t in lines}
    expected = df["exit_status"].astype(object).fillna("ACTIVE").value_counts().to_dict()
    assert counts == expected
    for t in lines:
        assert t.line.color == status_color(t.legendgroup)
        # start, end, gap per session
        assert len(t.x) == 3 * counts[t.legendgroup]


def test_timeline_hover_carries_each_session_id_label_and_lane(df):
    fig = plots.session_timeline(df, now=NOW)
    hover_ids = set()
    for t in fig.data:
        if t.mode == "markers" and t.customdata is not None:
            hover_ids.update(row[0] for row in t.customdata)
            assert "%{customdata[1]}" in t.hovertemplate and "engine_pod" in t.hovertemplate
    assert hover_ids == set(df.index)
    sid = df.index[0]
    row = next(r for t in fig.data if t.customdata is not None for r in t.customdata if r[0] == sid)
    assert row[3] == str(df.loc[sid, "engine_version"])


def test_timeline_lanes_are_the_chosen_column(df):
    fig = plots.session_timeline(df, by="engine_region", now=NOW)
    lanes = set(df["engine_region"].dropna().astype(str))
    if df["engine_region"].isna().any():
        lanes.add("(missing)")
    assert set(fig.layout.yaxis.ticktext) == lanes
    assert fig.layout.yaxis.title.text == "engine_region"


def test_timeline_marks_active_sessions_running_to_now(df):
    fig = plots.session_timeline(df, now=NOW)
    active = int(df["is_active"].sum())
    assert active > 0
    marker = next(t for t in fig.data if t.name.startswith("still active"))
    assert len(marker.x) == active
    now_ms = (NOW.tz_localize(None) - pd.Timestamp(0)) / pd.Timedelta(1, "ms")
    assert np.allclose(marker.x, now_ms)


def test_timeline_colour_by_another_column_uses_stable_hashed_colours(df):
    fig = plots.session_timeline(df, color="engine_version", now=NOW)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert {t.legendgroup for t in lines} == set(df["engine_version"].dropna().astype(str)) | (
        {"(missing)"} if df["engine_version"].isna().any() else set())
    assert all(t.line.color == hashed_color(t.legendgroup) for t in lines)


def test_timeline_over_max_sessions_keeps_failures_and_says_so(df):
    fig = plots.session_timeline(df, now=NOW, max_sessions=500)
    failures = int(is_failure(df["exit_status"]).sum())
    drawn = sum(len(t.customdata) for t in fig.data if t.mode == "markers" and t.customdata is not None)
    assert drawn == max(500, failures + int(df["is_active"].sum()))
    errors = int((df["exit_status"] == "ERROR").sum())
    error_line = _trace(fig, f"ERROR ({errors})")
    assert error_line.mode == "lines" and len(error_line.x) == 3 * errors  # start, end, gap: none sampled away
    assert any(f"of {len(df)} sessions" in a.text for a in fig.layout.annotations)


def test_timeline_display_time_zone_shifts_wall_clock(df):
    utc = plots.session_timeline(df, now=NOW)
    tokyo = plots.session_timeline(df, now=NOW, tz="Asia/Tokyo")
    shift = np.nanmax(np.asarray(tokyo.data[0].x) - np.asarray(utc.data[0].x))
    assert shift == pytest.approx(9 * 3600 * 1000)
    assert "Asia/Tokyo" in tokyo.layout.xaxis.title.text


def test_timeline_escapes_markup_in_hover_ticks_and_legend(hostile_df):
    fig = plots.session_timeline(hostile_df, now=NOW)
    text = _figure_json(fig)
    assert HOSTILE not in text and "<b>FAIL</b>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in fig.layout.yaxis.ticktext
    assert any(t.name.startswith("&lt;b&gt;FAIL&lt;/b&gt;") for t in fig.data)


# ---------------------------------------------------------------- exit statuses over time

def test_exit_status_over_time_counts_every_session(df):
    fig = plots.exit_status_over_time(df, freq="6h")
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert sum(int(np.sum(t.y)) for t in bars) == len(df)
    assert {t.name for t in bars} == set(df["exit_status"].astype(object).fillna("ACTIVE"))
    for t in bars:
        assert t.marker.color == status_color(t.name)
    assert fig.layout.barmode == "stack"


def test_exit_status_over_time_failure_rate_matches_counts(df):
    fig = plots.exit_status_over_time(df, freq="1D")
    rate = _trace(fig, "failure rate")
    failed, finished = np.asarray(rate.customdata).T
    assert failed.sum() == is_failure(df["exit_status"]).sum()
    assert finished.sum() == df["exit_status"].notna().sum()
    assert np.allclose(np.asarray(rate.y, dtype=float), 100 * failed / finished, equal_nan=True)


def test_exit_status_over_time_marks_the_rollouts_analysis_finds(df):
    """One definition of a rollout: the markers are `analysis.rollouts`, so a version already
    serving when the window opens gets none."""
    fig = plots.exit_status_over_time(df)
    notes = {a.text for a in fig.layout.annotations if a.text.endswith("rolled out")}
    found = analysis.rollouts(df)
    assert notes == {f"{v} rolled out" for v in found.index} and notes
    first = df.dropna(subset=["engine_version"]).groupby("engine_version", observed=True)["start_time"].min()
    running = first[first <= df["start_time"].min() + pd.Timedelta("1h")].index.astype(str)
    assert len(running) and not {f"{v} rolled out" for v in running} & notes


def test_exit_status_over_time_rejects_a_bad_frequency(df):
    with pytest.raises(ValueError, match="'1 fortnight'"):
        plots.exit_status_over_time(df, freq="1 fortnight")
    with pytest.raises(ValueError, match="'1MS'"):
        plots.exit_status_over_time(df, freq="1MS")


# ---------------------------------------------------------------- host health

def test_host_health_counts_and_masks_low_volume_cells(df):
    fig = plots.host_health(df, freq="6h", min_sessions=5)
    grey, rate = fig.data
    custom = np.asarray(rate.customdata, dtype=float)
    n, failed = custom[..., 0], custom[..., 1]
    finished = df[df["exit_status"].notna()]
    assert n.sum() == len(finished)
    assert failed.sum() == is_failure(finished["exit_status"]).sum()
    z = np.asarray(rate.z, dtype=float)
    assert np.isnan(z[n < 5]).all()
    assert not np.isnan(z[n >= 5]).any()
    assert np.allclose(z[n >= 5], failed[n >= 5] / n[n >= 5])
    assert (~np.isnan(np.asarray(grey.z, dtype=float))).sum() == ((n > 0) & (n < 5)).sum()


def test_host_health_puts_the_incident_pod_near_the_top(df, fleet):
    pod = next(i.pod for i in fleet.incidents if i.kind == "pod")
    fig = plots.host_health(df, by="engine_pod")
    assert pod in list(fig.data[1].y)[:3]


def test_host_health_escapes_lane_names(hostile_df):
    fig = plots.host_health(hostile_df, min_sessions=1)
    assert "&lt;img src=x onerror=alert(1)&gt;" in list(fig.data[1].y)
    assert HOSTILE not in _figure_json(fig)


# ---------------------------------------------------------------- session detail

def _transcript_with_interruption(fleet):
    for sid in fleet.transcripts:
        transcript = fleet.transcripts[sid]
        if any(m.get("wasInterrupted") for m in transcript["messages"]):
            return sid, transcript
    raise AssertionError("the fleet has no interrupted message")


def test_session_detail_shows_turns_interruptions_and_lifecycle(fleet):
    sid, transcript = _transcript_with_interruption(fleet)
    turns = transcript_frame(transcript)
    record = fleet.by_id[sid]
    fig = plots.session_detail(turns, session=record)
    for role in ("user", "persona"):
        trace = _trace(fig, role)
        # A message without a start time cannot be placed on the axis; every other one is drawn.
        assert len(trace.x) == int(((turns["role"] == role) & turns["timestamp"].notna()).sum())
    marks = _trace(fig, "interrupted")
    assert len(marks.x) == int(turns["interrupted"].fillna(False).sum())
    life = next(t for t in fig.data if t.hovertemplate and "lifecycle" in t.hovertemplate)
    assert life.marker.color == status_color(record["exitStatus"])
    assert sid in fig.layout.title.text


def test_session_detail_accepts_a_frame_row_and_escapes_text(fleet, df):
    sid, transcript = _transcript_with_interruption(fleet)
    transcript = dict(transcript, messages=[dict(m, message=HOSTILE) for m in transcript["messages"]])
    fig = plots.session_detail(transcript_frame(transcript), session=df.loc[sid], tz="Europe/London")
    assert HOSTILE not in _figure_json(fig)
    assert "Europe/London" in fig.layout.xaxis.title.text


def test_session_detail_without_messages_or_session_is_an_empty_figure():
    fig = plots.session_detail(transcript_frame({"messages": []}))
    assert fig.layout.annotations[0].text == "no transcript messages"


# ---------------------------------------------------------------- duration distribution

def test_duration_distribution_one_box_per_group_with_counts(df):
    fig = plots.duration_distribution(df, by="engine_version")
    finished = df[df["duration"].notna()]
    expected = finished["engine_version"].astype(object).fillna("(missing)").value_counts()
    assert {t.name: len(t.y) for t in fig.data} == {f"{k} (n={v})": v for k, v in expected.items()}


def test_duration_distribution_by_status_uses_status_colours(df):
    fig = plots.duration_distribution(df, by="exit_status")
    for t in fig.data:
        assert t.marker.color == status_color(t.name.split(" (n=")[0])


# ---------------------------------------------------------------- shared behaviour

@pytest.mark.parametrize("build", [
    lambda d: plots.session_timeline(d),
    lambda d: plots.exit_status_over_time(d),
    lambda d: plots.host_health(d),
    lambda d: plots.duration_distribution(d),
])
def test_empty_frames_give_an_annotated_empty_figure(df, build):
    fig = build(df.iloc[:0])
    assert fig.data == ()
    assert fig.layout.annotations[0].text in ("no sessions", "no finished sessions")


@pytest.mark.parametrize("build", [
    lambda d: plots.session_timeline(d, by="pod"),
    lambda d: plots.host_health(d, by="pod"),
    lambda d: plots.duration_distribution(d, by="pod"),
])
def test_missing_column_names_the_valid_ones(df, build):
    with pytest.raises(ValueError, match=r"'pod' is not in the frame; valid columns: .*'engine_pod'"):
        build(df)


def test_bad_time_zone_is_named(df):
    with pytest.raises(ValueError, match="'Mars/Olympus'"):
        plots.session_timeline(df, tz="Mars/Olympus")


def test_failure_statuses_are_a_parameter(df):
    fig = plots.exit_status_over_time(df, failures={"TIMEOUT"}, freq="1D")
    failed, _ = np.asarray(_trace(fig, "failure rate").customdata).T
    assert failed.sum() == (df["exit_status"] == "TIMEOUT").sum()


def test_status_colours_are_fixed_for_known_and_stable_for_unknown():
    assert status_color("ERROR") == KNOWN_STATUS_COLORS["ERROR"]
    assert status_color(None) == status_color(float("nan")) == KNOWN_STATUS_COLORS["ACTIVE"]
    odd = status_color("ENGINE_MELTED")
    assert odd == status_color("ENGINE_MELTED") and odd in PALETTE
    assert odd not in KNOWN_STATUS_COLORS.values()


def test_figures_serialise_to_json(df):
    for fig in (plots.session_timeline(df, now=NOW), plots.host_health(df)):
        spec = json.loads(fig.to_json())
        assert len(spec["data"]) == len(fig.data) and spec["layout"]["title"]["text"] == fig.layout.title.text
        assert [(t["type"], t.get("name")) for t in spec["data"]] == [(t.type, t.name) for t in fig.data]
        assert [_points(t["x"]) for t in spec["data"]] == [len(t.x) for t in fig.data]  # nothing lost


def _points(values) -> int:
    """How many values a JSON-encoded plotly array holds (plain list, or base64 typed array)."""
    if isinstance(values, dict) and "bdata" in values:
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
    return len(values)


def test_data_never_becomes_hover_template_text(hostile_df, fleet):
    """Statuses/labels reach hovers as values (customdata, trace names), never as template text."""
    sid, transcript = _transcript_with_interruption(fleet)
    record = dict(fleet.by_id[sid], exitStatus="<b>FAIL</b>")
    figures = [plots.session_timeline(hostile_df, now=NOW), plots.exit_status_over_time(hostile_df),
               plots.host_health(hostile_df), plots.duration_distribution(hostile_df, by="exit_status"),
               plots.session_detail(transcript_frame(transcript), session=record)]
    for fig in figures:
        for trace in fig.data:
            assert "FAIL" not in (trace.hovertemplate or "")


# -- colours that do not mislead: a status never seen before never looks like a known one

def _delta_e(a: str, b: str) -> float:
    from coloraide import Color

    return Color(a).delta_e(Color(b), method="2000")


def test_every_hashed_colour_is_far_from_every_known_status_colour():
    from anam_notebooks.views.colors import MIN_DELTA_E_FROM_KNOWN, MIN_DELTA_E_WITHIN_PALETTE

    for colour in PALETTE:
        closest = min(KNOWN_STATUS_COLORS.items(), key=lambda kv: _delta_e(colour, kv[1]))
        assert _delta_e(colour, closest[1]) >= MIN_DELTA_E_FROM_KNOWN, (colour, closest)
    pairs = [(a, b) for i, a in enumerate(PALETTE) for b in PALETTE[i + 1:]]
    assert min(_delta_e(a, b) for a, b in pairs) >= MIN_DELTA_E_WITHIN_PALETTE
    known = list(KNOWN_STATUS_COLORS.values())
    assert min(_delta_e(a, b) for i, a in enumerate(known) for b in known[i + 1:]) >= MIN_DELTA_E_FROM_KNOWN


def test_new_statuses_never_take_a_known_status_look():
    statuses = ["ENGINE_OOM", "MAX_DURATION_REACHED", "CLIENT_DISCONNECTED", "FAILED_TO_START",
                *(f"NEW_STATUS_{n}" for n in range(300))]
    for status in statuses:
        colour = status_color(status)
        assert colour not in KNOWN_STATUS_COLORS.values()
        assert min(_delta_e(colour, k) for k in KNOWN_STATUS_COLORS.values()) >= 20, status
    assert _delta_e(status_color("ENGINE_OOM"), KNOWN_STATUS_COLORS["NORMAL_EXIT"]) >= 20
