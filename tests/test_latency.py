"""response_latency on simulated fleets: a planted slowdown is found at the right size, quiet
fleets stay quiet, and the table works for any session attribute."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

import anam_notebooks as an
from anam_notebooks import analysis, plots, sessions_frame
from anam_notebooks.data.transcripts import turns_frame
from anam_notebooks.simulator import create_app, demo_client, generate_fleet, plant_latency_regression

QUIET_SEEDS = 120

END = datetime(2026, 4, 20, 12, tzinfo=UTC)   # fixed, so every run draws the same fleets


def _frames(fleet):
    """Sessions and the turns of every transcript, read straight from the fleet (no HTTP)."""
    ids = list(fleet.transcripts)
    return sessions_frame(fleet.sessions), turns_frame([fleet.transcripts[i] for i in ids], session_ids=ids)


@pytest.mark.parametrize("target", [{"engine_version": "v5.1.0"}, {"llm_model": "gpt-4o"}])
def test_a_planted_regression_is_found_at_its_size_through_the_api(target):
    fleet = plant_latency_regression(generate_fleet(seed=21, sessions=1500, span="2d", end=END, incidents=False),
                                     extra_seconds=0.9, **target)
    client = demo_client(create_app(fleet))
    sessions = an.fetch_sessions(client, progress=False)
    turns = an.fetch_transcripts(client, sessions, sample=600, progress=False)
    (by, slow), = target.items()
    table = analysis.response_latency(turns, sessions, by=by)
    row = table.loc[slow]
    assert table.index[0] == slow
    assert row["q_value"] < 0.01
    assert row["shift"] == pytest.approx(0.9, abs=0.3)
    assert row["p50_low"] <= row["p50"] <= row["p50_high"]
    others = table.drop(index=slow)
    assert not ((others["q_value"] < 0.05) & (others["shift"] > 0)).any()
    words = analysis.summarize_latency(table)
    assert f"{by} {slow} answer" in words and "s slower at the median" in words and "q = " in words


def test_the_demo_fleet_plants_its_regression_on_the_newest_version():
    fleet = generate_fleet(seed=2, sessions=800, span="24h", end=END)
    regression, = fleet.latency_regressions
    sessions, turns = _frames(fleet)
    table = analysis.response_latency(turns, sessions, by="engine_version")
    assert table.index[0] == regression.engine_version == "v5.1.1"
    assert table.loc["v5.1.1", "shift"] == pytest.approx(regression.extra_seconds, abs=0.3)
    assert not generate_fleet(seed=2, sessions=800, span="24h", end=END, incidents=False).latency_regressions


@pytest.mark.slow
def test_quiet_fleets_flag_no_group_in_at_least_95_percent_of_seeds():
    """Each (seed, attribute) is one analysis a user would run; at most 5 % may flag a group."""
    alarms = []
    for seed in range(QUIET_SEEDS):
        fleet = generate_fleet(seed=seed, sessions=220, span="2d", end=END, incidents=False)
        sessions, turns = _frames(fleet)
        for by in ("engine_version", "llm_model"):
            table = analysis.response_latency(turns, sessions, by=by, bootstrap=0)
            assert table["p_value"].notna().sum() >= 2, (seed, by)
            if (table["q_value"] < 0.05).any():
                alarms.append((seed, by))
    print(f"{len(alarms)} of {2 * QUIET_SEEDS} quiet analyses flagged a group: {alarms}")
    assert len(alarms) <= 0.05 * 2 * QUIET_SEEDS, alarms


@pytest.mark.slow
def test_turn_level_testing_would_raise_false_alarms_the_session_test_avoids():
    """Why sessions are the unit: answers of one session share its pace, so treating answers as
    independent over-counts evidence. On quiet fleets a turn-level rank test fires far more often."""
    from scipy import stats
    naive = honest = 0
    for seed in range(30):
        sessions, turns = _frames(generate_fleet(seed=seed, sessions=220, span="2d", end=END, incidents=False))
        version = sessions["engine_version"].astype(object).reindex(turns["session_id"].to_numpy()).to_numpy()
        gap = turns["response_gap"].to_numpy()
        keep = ~np.isnan(gap) & pd.notna(version)
        group = version[keep] == "v5.1.0"
        naive += stats.mannwhitneyu(gap[keep][group], gap[keep][~group]).pvalue < 0.05
        table = analysis.response_latency(turns, sessions, by="engine_version", bootstrap=0)
        honest += table.loc["v5.1.0", "p_value"] < 0.05
    assert naive > 2 * max(honest, 1), (naive, honest)


def test_any_attribute_works_and_hostile_or_missing_labels_are_groups():
    fleet = generate_fleet(seed=4, sessions=600, span="2d", end=END, incidents=False)
    sessions, turns = _frames(fleet)
    for by in ("llm_model", "tts_provider", "engine_pod", "client_label"):
        table = analysis.response_latency(turns, sessions, by=by)
        assert table.index.name == by
        assert (table["sessions"] > 0).all() and table["turns"].sum() == table.attrs["turns"]
        assert ((0 <= table["interruption_rate"]) & (table["interruption_rate"] <= 1)).all()
        assert ((table["p90"] >= table["p50"]) & (table["overlaps"] <= table["turns"])).all()
    labels = analysis.response_latency(turns, sessions, by="client_label")
    assert None in labels.index and 'Café "kiosk" <beta> & co' in labels.index
    figure = plots.response_gap_distribution(turns, sessions, by="client_label")
    names = " ".join(trace.name for trace in figure.data)
    assert "&lt;beta&gt;" in names and "<beta>" not in names


def test_the_table_is_reproducible_and_overlaps_are_counted():
    fleet = generate_fleet(seed=8, sessions=400, span="2d", end=END, incidents=False)
    sessions, turns = _frames(fleet)
    one = analysis.response_latency(turns, sessions)
    pd.testing.assert_frame_equal(one, analysis.response_latency(turns, sessions))
    assert one.attrs["overlaps"] == int((turns["response_gap"] < 0).sum()) == one["overlaps"].sum() > 0
    assert 0.02 < one["overlap_rate"].mean() < 0.12


def test_bad_arguments_name_what_is_valid():
    sessions, turns = _frames(generate_fleet(seed=1, sessions=40, span="1d", end=END, incidents=False))
    with pytest.raises(ValueError, match="by names unknown column"):
        analysis.response_latency(turns, sessions, by="engine_pood")
    with pytest.raises(ValueError, match="response_gap"):
        analysis.response_latency(turns.drop(columns="response_gap"), sessions)
    with pytest.raises(ValueError, match="bootstrap"):
        analysis.response_latency(turns, sessions, bootstrap=-1)


def test_plots_draw_groups_and_rollout_markers():
    fleet = generate_fleet(seed=3, sessions=900, span="24h", end=END)
    sessions, turns = _frames(fleet)
    over_time = plots.latency_over_time(turns, sessions, freq="2h")
    assert [t.name for t in over_time.data] == ["p50", "p90"]
    markers = [a.text for a in over_time.layout.annotations]
    assert any("v5.1.1 rolled out" in text for text in markers)
    assert {m.split()[0] for m in markers} == set(analysis.rollouts(sessions, "2h").index)
    p50 = np.asarray(over_time.data[0].y, dtype=float)
    assert np.nanmax(p50) > np.nanmin(p50) + 0.3          # the slow rollout shows as a step
    ecdf = plots.response_gap_distribution(turns, sessions)
    assert len(ecdf.data) == sessions["engine_version"].nunique() + sessions["engine_version"].isna().any()
    empty = plots.latency_over_time(turns.iloc[:0], sessions)
    assert "no persona answers" in empty.layout.annotations[0].text
