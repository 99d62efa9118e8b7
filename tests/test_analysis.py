"""Diagnosis helpers on small hand-built frames: failure rules, rates, shifts, errors, empties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anam_notebooks import analysis


def frame(rows: list[tuple[str, str | None, str, bool]]) -> pd.DataFrame:
    """Sessions from (start, exit_status, pod, is_active) tuples, with the frame's dtypes."""
    start = pd.to_datetime([r[0] for r in rows], utc=True)
    pods = [r[2] for r in rows]
    return pd.DataFrame({
        "start_time": start,
        "exit_status": pd.Categorical([r[1] for r in rows]),
        "is_active": [r[3] for r in rows],
        "engine_pod": pd.Categorical(pods),
        "engine_replicaset": pd.Categorical([p.rsplit("-", 1)[0] for p in pods]),
        "engine_region": pd.Categorical(["eu"] * len(rows)),
    }, index=pd.Index([f"s{i}" for i in range(len(rows))], name="id"))


def test_default_failures_cover_error_and_fail_names_case_insensitively():
    statuses = ["ERROR", "ENGINE_ERROR", "failed_to_start", "NORMAL_EXIT", None, "Timeout"]
    assert analysis.is_failure(statuses).tolist() == [True, True, True, False, False, False]
    assert analysis.is_failure(statuses, analysis.DEFAULT_FAILURES).tolist() == \
        analysis.is_failure(statuses).tolist()


def test_failures_can_be_a_collection_or_a_function():
    statuses = pd.Series(["ERROR", "TIMEOUT", "NORMAL_EXIT"], dtype="category")
    assert analysis.is_failure(statuses, {"TIMEOUT"}).tolist() == [False, True, False]
    assert analysis.is_failure(statuses, "ERROR").tolist() == [True, False, False]
    assert analysis.is_failure(statuses, lambda s: s != "NORMAL_EXIT").tolist() == [True, True, False]
    with pytest.raises(TypeError, match="collection of exit statuses"):
        analysis.is_failure(statuses, 42)


def test_failure_rates_leave_active_sessions_out_and_bound_the_rate():
    df = frame([("2024-05-01T10:00Z", "ERROR", "rs-a", False),
                ("2024-05-01T10:05Z", "NORMAL_EXIT", "rs-a", False),
                ("2024-05-01T10:06Z", None, "rs-a", True),
                ("2024-05-01T10:07Z", "NORMAL_EXIT", "rs-b", False)])
    rates = analysis.failure_rates(df, by="engine_pod")
    assert list(rates.columns) == ["sessions", "failures", "rate", "ci_low", "ci_high", "active"]
    a = rates.loc["rs-a"]
    assert (a["sessions"], a["failures"], a["active"]) == (2, 1, 1)
    assert a["rate"] == 0.5
    assert 0 < a["ci_low"] < 0.5 < a["ci_high"] < 1
    # Zero failures in one session still leaves a wide interval, never 0 %–0 %.
    b = rates.loc["rs-b"]
    assert b["rate"] == 0 and b["ci_low"] == 0 and b["ci_high"] > 0.7


def test_failure_rates_group_by_several_columns_and_keep_missing_groups():
    df = frame([("2024-05-01T10:00Z", "ERROR", "rs-a", False),
                ("2024-05-01T11:00Z", "ERROR", "rs-b", False)])
    df["engine_version"] = pd.Categorical(["v1", None])
    rates = analysis.failure_rates(df, by=["engine_region", "engine_version"])
    assert rates["sessions"].sum() == 2
    assert rates.index.nlevels == 2


def test_bad_arguments_name_the_value_and_what_is_valid():
    df = frame([("2024-05-01T10:00Z", "ERROR", "rs-a", False)])
    with pytest.raises(ValueError, match=r"unknown column.*'engine_podd'.*engine_pod"):
        analysis.failure_rates(df, by="engine_podd")
    with pytest.raises(ValueError, match=r"levels names unknown column"):
        analysis.rank_suspects(df, levels=("engine_pod", "nope"))
    with pytest.raises(ValueError, match=r"freq='fortnight' is not a fixed-length pandas offset.*'1h'"):
        analysis.rank_suspects(df, levels="engine_pod", freq="fortnight")
    with pytest.raises(ValueError, match=r"min_sessions=-1"):
        analysis.rank_suspects(df, levels="engine_pod", min_sessions=-1)
    with pytest.raises(ValueError, match=r"not in the frame.*no columns at all"):
        analysis.rank_suspects(pd.DataFrame())
    with pytest.raises(TypeError, match="sessions DataFrame"):
        analysis.failure_rates([{"exitStatus": "ERROR"}])


def test_empty_input_gives_empty_typed_results():
    df = frame([("2024-05-01T10:00Z", "ERROR", "rs-a", False)]).iloc[:0]
    ranked = analysis.rank_suspects(df, levels=("engine_pod", "engine_replicaset"))
    assert ranked.empty and "finding" in ranked.columns
    assert ranked["window_start"].dtype == "datetime64[ns, UTC]"
    assert ranked["flagged"].dtype == bool
    assert analysis.summarize_suspects(ranked).splitlines()[1].startswith("No unit stands out")
    rates = analysis.failure_rates(df, by="engine_pod")
    assert rates.empty and rates["sessions"].dtype == np.int64
    shift = analysis.exit_status_shift(df, "2024-05-01")
    assert shift.empty and np.isnan(shift.attrs["p_value"])


def test_units_below_the_minimum_volume_are_never_ranked():
    # One failure out of two sessions: a 50 % rate that must not become a headline.
    rows = [(f"2024-05-01T{h:02d}:00Z", "NORMAL_EXIT", f"rs-a-p{h % 5}", False) for h in range(24)]
    rows += [("2024-05-01T05:30Z", "ERROR", "rs-z-tiny", False),
             ("2024-05-01T06:30Z", "NORMAL_EXIT", "rs-z-tiny", False)]
    ranked = analysis.rank_suspects(frame(rows), levels="engine_pod")
    assert "rs-z-tiny" not in set(ranked["unit"])
    assert ranked.attrs["untested_units"] == 6


def test_exit_status_shift_by_time_finds_the_status_that_moved():
    rng = np.random.default_rng(0)
    before = rng.choice(["NORMAL_EXIT", "ERROR"], p=[0.95, 0.05], size=400)
    after = rng.choice(["NORMAL_EXIT", "ERROR", "ENGINE_OOM"], p=[0.75, 0.05, 0.20], size=400)
    times = [f"2024-05-01T{i % 24:02d}:00Z" for i in range(400)] + \
            [f"2024-05-02T{i % 24:02d}:00Z" for i in range(400)]
    df = frame([(t, s, "rs-a", False) for t, s in zip(times, [*before, *after])])
    shift = analysis.exit_status_shift(df, "2024-05-02")
    assert shift.index[0] == "ENGINE_OOM"     # an unknown status is kept and leads
    oom = shift.loc["ENGINE_OOM"]
    assert oom["before"] == 0 and oom["after_share"] == pytest.approx(oom["after"] / 400)
    assert oom["difference"] > 0.1 and oom["q_value"] < 1e-6
    assert shift.attrs["p_value"] < 1e-6 and shift.attrs["before_sessions"] == 400
    assert shift.loc["ERROR", "q_value"] > 0.01


def test_exit_status_shift_by_rollout_column_or_mask_and_small_counts():
    rows = [("2024-05-01T10:00Z", "NORMAL_EXIT", "rs-a", False)] * 6 + \
           [("2024-05-01T11:00Z", "ERROR", "rs-b", False)] * 3 + \
           [("2024-05-01T11:00Z", "NORMAL_EXIT", "rs-b", False)] * 3
    df = frame(rows)
    df["engine_version"] = pd.Categorical(["v1"] * 6 + ["v2"] * 6)
    by_column = analysis.exit_status_shift(df, "engine_version", before="v1", after="v2")
    assert by_column.attrs["method"].startswith("monte-carlo exact")
    assert by_column.loc["ERROR", "after_share"] == 0.5
    by_mask = analysis.exit_status_shift(df, df["engine_version"] == "v2")
    assert by_mask["after"].to_dict() == by_column["after"].to_dict()
    with pytest.raises(ValueError, match=r"needs before= and after=.*v1, v2"):
        analysis.exit_status_shift(df, "engine_version")
    with pytest.raises(ValueError, match=r"neither a column of the frame nor a timestamp"):
        analysis.exit_status_shift(df, "yesterday-ish")
    with pytest.raises(ValueError, match=r"no ended session before"):
        analysis.exit_status_shift(df, "2020-01-01")


def test_rank_suspects_on_a_handful_of_sessions_returns_typed_rows_without_windows():
    """Too few failures for any window: the rows still come back, with NaT windows in UTC."""
    from anam_notebooks.data.sessions import sessions_frame
    from anam_notebooks.simulator import generate_fleet

    df = sessions_frame(generate_fleet(seed=0, sessions=2000, span="24h").sessions[:30])
    ranked = analysis.rank_suspects(df)
    assert str(ranked["window_start"].dtype) == "datetime64[ns, UTC]"
    assert not ranked["flagged"].any()


def test_scan_finds_the_burst_and_pays_for_every_window_searched():
    from anam_notebooks.analysis.stats import scan_p_value, scan_windows

    sessions = np.full(48, 50.0)
    expected = np.full(48, 2.0)
    observed = np.full(48, 2.0)
    observed[20:24] = 20.0                     # four bad hours
    first, last, llr, searched = scan_windows(observed, sessions, expected)
    assert (first, last) == (20, 23) and searched == 48 * 49 // 2
    assert scan_p_value(llr, searched) < 1e-20
    # The same excess split thin over the whole day is no burst at all.
    flat = scan_windows(np.full(48, 2.0), sessions, expected)
    assert flat[0] == -1 and scan_p_value(flat[2], flat[3]) == 1.0
    # A longest-window cap shrinks the count the p-value is multiplied by.
    assert scan_windows(observed, sessions, expected, max_length=6)[3] == sum(48 - k for k in range(6))


def test_stratified_excess_large_groups_agree_with_the_exact_convolution():
    from anam_notebooks.analysis.stats import stratified_excess

    rng = np.random.default_rng(1)
    M = np.full(40, 5000)
    K = rng.integers(200, 400, size=40)
    n = np.full(40, 60)
    x = (n * K / M).astype(int) + 2
    group = np.zeros(40, dtype=np.int64)
    exact, _ = stratified_excess(n, x, M, K, group, 1, exact_limit=1e9)
    bound, _ = stratified_excess(n, x, M, K, group, 1, exact_limit=0)
    assert 0 < exact[0] < 0.01
    # The binomial tail never says less than the exact one (no false alarms), and for a unit
    # that is a small part of each stratum it says about as much.
    assert exact[0] <= bound[0] < 2 * exact[0]


def test_what_differs_ranks_the_value_the_failures_share():
    rows = [(f"2024-05-01T{h:02d}:{m:02d}Z", "NORMAL_EXIT", f"rs-a-p{m % 3}", False)
            for h in range(10) for m in range(0, 60, 5)]
    rows += [(f"2024-05-01T03:{m:02d}Z", "ERROR", "rs-a-p9", False) for m in range(10)]
    df = frame(rows)
    out = analysis.what_differs(df, "2024-05-01T02:00Z", "2024-05-01T05:00")
    top = out.iloc[0]
    assert (top["level"], top["value"], top["failing"], top["failing_share"]) == ("engine_pod", "rs-a-p9", 10, 1.0)
    assert top["healthy"] == 0 and top["q_value"] < 0.001 and top["family"] == "engine"
    assert out.attrs["failing"] == 10 and out.attrs["healthy"] == 36
    with pytest.raises(ValueError, match="start='soon'"):
        analysis.what_differs(df, "soon")
