"""fetch_sessions against the simulator: since/until/limit/filters, early stop, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from anam_notebooks import fetch_sessions
from anam_notebooks.data.timespan import parse_time_bound, parse_window
from anam_notebooks.simulator import create_app, demo_client, generate_fleet

FLEET_END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def client_and_sim(sim_app):
    return demo_client(sim_app), sim_app.state.simulator


def starts(fleet) -> pd.Series:
    """Each fleet session's start time, parsed independently of the code under test."""
    return pd.Series({r["id"]: pd.Timestamp(r["startTime"]).tz_convert("UTC") for r in fleet.sessions})


def test_full_fetch_is_every_session_newest_first(client_and_sim, fleet):
    client, simulator = client_and_sim
    df = fetch_sessions(client, progress=False)
    assert set(df.index) == {r["id"] for r in fleet.sessions}
    assert df.start_time.is_monotonic_decreasing
    assert simulator.stats["list"] >= len(fleet.sessions) // 100


def test_since_and_until_window_with_explicit_datetimes(client_and_sim, fleet):
    client, simulator = client_and_sim
    since, until = FLEET_END - timedelta(hours=30), FLEET_END - timedelta(hours=6)
    df = fetch_sessions(client, since=since, until=until, progress=False)
    times = starts(fleet)
    expected = set(times[(times >= since) & (times <= until)].index)
    assert set(df.index) == expected and len(expected) > 100
    assert df.start_time.min() >= since and df.start_time.max() <= until
    assert df.start_time.is_monotonic_decreasing


def test_since_stops_paging_early(client_and_sim, fleet):
    client, simulator = client_and_sim
    fetch_sessions(client, progress=False)
    full_scan = simulator.stats["list"]
    simulator.reset_stats()
    df = fetch_sessions(client, since=FLEET_END - timedelta(hours=12), progress=False)
    assert 0 < simulator.stats["list"] < full_scan / 3
    times = starts(fleet)
    assert len(df) == int((times >= FLEET_END - timedelta(hours=12)).sum())


def test_naive_datetimes_and_iso_strings_mean_utc(client_and_sim):
    client, _ = client_and_sim
    aware = fetch_sessions(client, since=FLEET_END - timedelta(hours=3), progress=False)
    naive = fetch_sessions(client, since=datetime(2026, 4, 20, 9, 0), progress=False)
    text = fetch_sessions(client, since="2026-04-20T11:00:00+02:00", progress=False)
    pd.testing.assert_frame_equal(aware, naive)
    pd.testing.assert_frame_equal(aware, text)


def test_limit_keeps_the_newest_sessions_in_the_window(client_and_sim, fleet):
    client, simulator = client_and_sim
    until = FLEET_END - timedelta(days=2)
    df = fetch_sessions(client, until=until, limit=25, progress=False)
    times = starts(fleet)
    expected = times[times <= until].sort_values(ascending=False).index[:25]
    assert list(df.index) == list(expected)
    simulator.reset_stats()
    newest = fetch_sessions(client, limit=10, progress=False)
    assert len(newest) == 10 and simulator.stats["list"] <= 3
    assert fetch_sessions(client, limit=0, progress=False).empty


@pytest.mark.parametrize("field, column", [("persona_id", "personaId"), ("api_key_id", "apiKeyId")])
def test_exact_filters(client_and_sim, fleet, field, column):
    client, _ = client_and_sim
    value = next(r[column] for r in fleet.sessions if isinstance(r.get(column), str))
    df = fetch_sessions(client, progress=False, **{field: value})
    assert set(df.index) == {r["id"] for r in fleet.sessions if r.get(column) == value}
    assert (df[field] == value).all()


def test_search_filter_with_a_window(client_and_sim, fleet):
    client, _ = client_and_sim
    since = FLEET_END - timedelta(days=1)
    label = fleet.sessions[0]["clientLabel"]
    df = fetch_sessions(client, search=label, since=since, progress=False)
    times = starts(fleet)
    expected = {r["id"] for r in fleet.sessions
                if label.lower() in (r.get("clientLabel") or "").lower() and times[r["id"]] >= since}
    assert set(df.index) == expected and expected


def test_cached_fetch_applies_the_same_filters(tmp_path, client_and_sim, fleet):
    client, _ = client_and_sim
    label = fleet.sessions[0]["clientLabel"]
    persona = next(r["personaId"] for r in fleet.sessions if r.get("personaId"))
    for kwargs in ({"search": label.upper()}, {"persona_id": persona.upper()},
                   {"since": FLEET_END - timedelta(hours=20), "until": FLEET_END - timedelta(hours=2),
                    "limit": 40}):
        direct = fetch_sessions(client, progress=False, **kwargs)
        cached = fetch_sessions(client, cache=tmp_path, progress=False, **kwargs)
        pd.testing.assert_frame_equal(direct, cached)


@pytest.mark.parametrize("kwargs, message", [
    ({"since": "yesterday"}, r"since='yesterday'.*'24h'"),
    ({"until": "5 parsecs"}, r"until='5 parsecs'"),
    ({"since": 1713600000}, r"since=1713600000"),
    ({"since": "2026-04-20T12:00Z", "until": "2026-04-19T12:00Z"}, "since must not be later than until"),
    ({"limit": -1}, r"limit=-1"),
    ({"limit": 2.5}, r"limit=2.5"),
    ({"limit": True}, r"limit=True"),
    ({"progress": "sometimes"}, r"progress='sometimes'"),
    ({"persona_id": "not-a-uuid"}, r"persona_id='not-a-uuid' is not a UUID"),
    ({"search": 5}, r"search=5"),
    ({"persona_id": "nope", "cache": True}, r"persona_id='nope'"),
])
def test_bad_arguments_are_clear_errors_before_any_request(client_and_sim, kwargs, message):
    client, simulator = client_and_sim
    with pytest.raises(ValueError, match=message):
        fetch_sessions(client, **kwargs)
    assert simulator.stats["total"] == 0


def test_bad_cache_argument(client_and_sim):
    client, _ = client_and_sim
    with pytest.raises(ValueError, match="cache=42"):
        fetch_sessions(client, cache=42, progress=False)


@pytest.mark.parametrize("text, hours", [("90m", 1.5), ("24h", 24), ("7d", 168), ("2w", 336),
                                         ("45s", 45 / 3600), (" 24H ", 24)])
def test_relative_spans_count_back_from_now(text, hours):
    now = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
    assert parse_time_bound(text, name="since", now=now) == pd.Timestamp(now) - timedelta(hours=hours)


def test_relative_span_against_a_live_fleet():
    app = create_app(generate_fleet(seed=3, sessions=400, span="3d"))
    df = fetch_sessions(demo_client(app), since="24h", progress=False)
    assert len(df) > 0
    assert df.start_time.min() >= pd.Timestamp.now(tz="UTC") - timedelta(hours=24, minutes=1)


def test_window_bounds_are_utc_timestamps():
    start, end = parse_window(datetime(2026, 4, 20, 9), "2026-04-20T12:00:00+02:00")
    assert start == pd.Timestamp("2026-04-20T09:00Z") and end == pd.Timestamp("2026-04-20T10:00Z")
    assert parse_window(None, None) == (None, None)


def test_progress_is_quiet_headless_and_shown_when_asked(client_and_sim, capsys):
    client, _ = client_and_sim
    fetch_sessions(client, since=FLEET_END - timedelta(hours=2), progress=True)
    assert "sessions" not in capsys.readouterr().err  # pytest's stderr is not a terminal
    fetch_sessions(client, since=FLEET_END - timedelta(hours=2), progress="always")
    assert "Fetching sessions" in capsys.readouterr().err


def test_without_a_client_it_connects_to_the_simulator(monkeypatch, capsys):
    monkeypatch.delenv("ANAM_API_KEY", raising=False)
    monkeypatch.delenv("ANAM_API_URL", raising=False)
    df = fetch_sessions(limit=5, progress=False)
    assert len(df) == 5 and df.start_time.is_monotonic_decreasing
    assert "simulator" in capsys.readouterr().out


def test_sessions_without_a_start_time_come_last(client_and_sim):
    from anam_notebooks import sessions_frame
    from anam_notebooks.data.sessions import newest_first
    records = [{"id": "b", "startTime": "2026-04-20T09:00:00Z"}, {"id": "none"},
               {"id": "a", "startTime": "2026-04-20T09:00:00Z"}, {"id": "new", "startTime": "2026-04-20T10:00:00Z"}]
    assert list(newest_first(sessions_frame(records)).index) == ["new", "b", "a", "none"]
