"""The notebook logic that lives in the package: rollouts and the split point, exemplar
sessions, the neighbour verdict, and findings as values — on the shared simulated fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from anam_notebooks import analysis, sessions_frame

NOW = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def df(fleet):
    return sessions_frame(fleet.sessions)


@pytest.fixture(scope="module")
def ranked(df):
    return analysis.rank_suspects(df)


def test_rollouts_are_versions_first_seen_inside_the_window(df):
    found = analysis.rollouts(df)
    assert len(found) >= 1 and found["first_seen"].is_monotonic_increasing
    first = df.groupby(df["engine_version"].astype("string"), observed=True)["start_time"].min()
    for version, row in found.iterrows():
        assert row["first_seen"] == first[version]
        assert row["first_seen"] > df["start_time"].min() + pd.Timedelta("1h")
    oldest = first.idxmin()
    assert oldest not in found.index   # serving from the start: running before the window opened
    assert analysis.latest_rollout(df) == found["first_seen"].iloc[-1]
    assert analysis.latest_rollout(df.iloc[:0]) is None


def test_split_accepts_every_form_since_does(df):
    assert analysis.split_time(None, df) == analysis.latest_rollout(df)
    assert analysis.split_time("6h", df, now=NOW) == pd.Timestamp(NOW - timedelta(hours=6))
    assert analysis.split_time("2026-04-19 09:00", df) == pd.Timestamp("2026-04-19T09:00Z")
    assert analysis.split_time(datetime(2026, 4, 19, 9), df) == pd.Timestamp("2026-04-19T09:00Z")
    with pytest.raises(ValueError, match="split='soon'"):
        analysis.split_time("soon", df)


def test_exit_status_shift_takes_a_span_before_now(df):
    recent = df.assign(start_time=df["start_time"] + (pd.Timestamp.now(tz="UTC") - df["start_time"].max()))
    shift = analysis.exit_status_shift(recent, split="3d")
    cut = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=3)
    ended = recent[~recent["is_active"] & recent["exit_status"].notna()]
    assert shift.attrs["after_sessions"] == pytest.approx((ended["start_time"] >= cut).sum(), abs=5)
    with pytest.raises(ValueError, match="span before now such as '6h'"):
        analysis.exit_status_shift(df, split="last tuesday")


def test_exemplars_are_the_top_findings_failures_inside_its_window(df, ranked, fleet):
    pod = next(i for i in fleet.incidents if i.kind == "pod")
    top = ranked[ranked["flagged"]].iloc[0]
    assert top["unit"] == pod.pod
    picked = analysis.exemplars(df, top, n=10)
    assert 1 <= len(picked) <= 10
    assert list(picked.columns) == list(analysis.EXEMPLAR_COLUMNS)
    assert (picked["engine_pod"].astype("string") == pod.pod).all()
    assert analysis.is_failure(picked["exit_status"]).all()
    assert ((picked["start_time"] >= top["window_start"]) & (picked["start_time"] < top["window_end"])).all()
    assert picked["start_time"].is_monotonic_decreasing
    as_dict = analysis.suspect_findings(ranked)[0]
    assert analysis.exemplars(df, as_dict, n=10).index.equals(picked.index)
    latest = analysis.exemplars(df, None, n=5)
    assert analysis.is_failure(latest["exit_status"]).all() and len(latest) == 5


def test_suspect_findings_are_the_headlines_as_plain_values(ranked, fleet):
    import json

    found = analysis.suspect_findings(ranked, q=0.01)
    heads = ranked[ranked["flagged"] & (ranked["q_value"] < 0.01)]
    assert [f["unit"] for f in found] == heads["unit"].tolist()
    assert found[0]["counts"]["failures"] == int(heads["failures"].iloc[0])
    assert found[0]["rates"]["rate"] == pytest.approx(heads["rate"].iloc[0])
    assert found[0]["sentence"] == heads["finding"].iloc[0]
    json.dumps(found, allow_nan=False)   # JSON-ready: no NaN, no Timestamp
    assert analysis.suspect_findings(ranked.iloc[:0]) == []
    with pytest.raises(ValueError, match="q=2"):
        analysis.suspect_findings(ranked, q=2)


def test_the_scope_of_a_finding_is_one_rule_for_its_sentence_its_record_and_the_ranking(ranked):
    """Where the evidence lies (window or whole period) decides the sentence's lead and the
    finding's `scope`: each finding is told the way its record says."""
    from anam_notebooks.analysis.wording import in_window

    found = analysis.suspect_findings(ranked, q=1.0)
    assert {f["scope"] for f in found} <= {"window", "period"}
    for f in found:
        window_led = "between" in f["sentence"].split(" vs ")[0]   # the window before the comparison
        if f["level"] != "fleet":
            assert window_led == (f["scope"] == "window"), f["sentence"]
    start = pd.Timestamp("2026-04-20 10:00", tz="UTC")
    assert in_window(12, start, 1e-4, 0.3) and not in_window(12, start, 0.3, 1e-4)
    assert in_window(12, start, 1e-4, None)            # no whole-period test: the window's
    assert not in_window(0, start, 1e-4, 0.3) and not in_window(12, pd.NaT, 1e-4, 0.3)
    assert not in_window(None, None, None, None)
    assert in_window([3, 0], [start, pd.NaT], [0.1, 0.1], [0.2, 0.2]).tolist() == [True, False]


def test_neighbour_verdict_blames_the_planted_pod_and_clears_a_healthy_one(df, fleet):
    pod = next(i for i in fleet.incidents if i.kind == "pod")
    inside = df[(df["engine_pod"].astype("string") == pod.pod)
                & (df["start_time"] >= pod.start) & (df["start_time"] < pod.end)
                & (df["exit_status"] == "ERROR")]
    row = inside.iloc[len(inside) // 2]
    since, until = analysis.neighbour_window(row)
    around = df[(df["start_time"] >= since) & (df["start_time"] <= until)]
    verdict = analysis.neighbour_verdict(row, around)
    assert verdict.verdict == "pod" and verdict.pod == pod.pod
    assert row.name not in verdict.neighbours.index
    assert verdict.pod_rate > verdict.fleet_rate and verdict.p_value < 0.01
    assert f"Pod {pod.pod} looks at fault" in verdict.sentence
    assert analysis.verdict_findings(verdict)[0]["unit"] == pod.pod

    healthy = df[(df["start_time"] < pod.start - pd.Timedelta("6h")) & (df["exit_status"] == "ERROR")
                 & (df["engine_replicaset"].astype("string") != pod.replicaset) & df["engine_pod"].notna()]
    row = healthy.iloc[0]
    since, until = analysis.neighbour_window(row)
    calm = analysis.neighbour_verdict(row, df[(df["start_time"] >= since) & (df["start_time"] <= until)])
    assert calm.verdict == "session" and "looks healthy" in calm.sentence
    assert analysis.verdict_findings(calm) == []


def test_session_summary_reads_like_a_ticket_line(df):
    row = df[df["exit_status"].notna() & df["engine_pod"].notna()].iloc[0]
    text = analysis.session_summary(row)
    assert text.startswith(f"Session {row.name} (")
    assert f"ended {row['exit_status']} after " in text and "days" not in text
    assert f"on pod {row['engine_pod']}" in text


def test_latency_findings_are_the_slower_groups_with_their_sentence():
    table = pd.DataFrame({
        "sessions": [120, 300], "turns": [900, 2400], "overlaps": [9, 20], "overlap_rate": [0.01, 0.008],
        "p50": [1.9, 0.9], "p50_low": [1.8, 0.85], "p50_high": [2.0, 0.95], "p90": [3.1, 1.6],
        "rest_p50": [0.9, 1.2], "shift": [1.0, -0.3], "persona_messages": [950, 2500],
        "interruptions": [40, 60], "interruption_rate": [0.042, 0.024],
        "p_value": [1e-9, 1e-5], "q_value": [3e-9, 2e-5]},
        index=pd.Index(["v5.1.1", "v5.0.3"], name="engine_version"))
    table.attrs["by"] = "engine_version"
    found = analysis.latency_findings(table)
    assert [f["unit"] for f in found] == ["v5.1.1"]   # the faster group is not a finding
    finding = found[0]
    assert finding["level"] == "engine_version" and finding["counts"] == {"sessions": 120, "answers": 900}
    assert finding["seconds"]["shift"] == 1.0 and finding["q_value"] == 3e-9
    assert finding["sentence"].startswith("Sessions on engine_version v5.1.1 answer 1.0 s slower")
    assert analysis.latency_findings(table, q=1e-10) == []
