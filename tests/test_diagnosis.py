"""The calibrated scan of rank_suspects: outages found in their window, quiet fleets quiet, the
p-values uniform when nothing happens, fleet-wide outages named as such, one session traced to
its finding."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import anam_notebooks as an
from anam_notebooks import analysis
from anam_notebooks.analysis.counts import count_sessions
from anam_notebooks.analysis.scan import daily_cycle, day_slots, scan_level
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator.fleet import generate_fleet

HOUR = pd.Timedelta("1h")
END = datetime(2026, 4, 20, 12, tzinfo=UTC)


def plant(df: pd.DataFrame, unit: pd.Series, start: pd.Timestamp, hours: float, rate: float,
          seed: int | list[int]) -> pd.DataFrame:
    """`rate` of the ended sessions of `unit` started in [start, start + hours) fail with ERROR."""
    end = start + pd.Timedelta(hours=hours)
    hit = unit & (df["start_time"] >= start) & (df["start_time"] < end) & ~df["is_active"]
    df.loc[hit & (np.random.default_rng(seed).random(len(df)) < rate), "exit_status"] = "ERROR"
    return df


def found_first(ranked: pd.DataFrame, names: set[tuple[str, str]], start: pd.Timestamp,
                end: pd.Timestamp) -> bool:
    top = ranked.iloc[0]
    return bool(top["flagged"] and top["q_value"] < 0.01 and (top["level"], top["unit"]) in names
                and abs(top["window_start"] - start) <= HOUR and abs(top["window_end"] - end) <= HOUR)


def provider_outage(seed: int) -> tuple[pd.DataFrame, set[tuple[str, str]], pd.Timestamp, pd.Timestamp]:
    """The issue's fleet: a week of 8,000 sessions, a TTS provider carrying 40–57 % of the
    traffic (personas are given a provider at random until its share lands there, each
    provider with one TTS model) failing 40 % of its sessions for 4 hours."""
    df = sessions_frame(generate_fleet(seed=seed, sessions=8000, span="7d", end=END,
                                       incidents=False).sessions)
    rng = np.random.default_rng(seed)
    shares = df["persona_name"].value_counts(normalize=True)
    while True:
        chosen = [p for p in shares.index if rng.random() < 0.5]
        if 0.40 <= shares[chosen].sum() <= 0.57:
            break
    unit = df["persona_name"].isin(chosen).fillna(False)
    for column, (on, off) in {"tts_provider": ("CARTESIA", "ELEVENLABS"),
                              "tts_model": ("sonic-2", "eleven_flash_v2_5")}.items():
        df[column] = pd.Series(np.where(unit, on, off), index=df.index).astype("category")
    start = df["start_time"].min().ceil("1h") + pd.Timedelta(hours=int(rng.integers(10, 150)))
    plant(df, unit, start, 4, 0.40, seed)
    # The provider, or its one TTS model (the same sessions), names the cause.
    return df, {("tts_provider", "CARTESIA"), ("tts_model", "sonic-2")}, start, start + pd.Timedelta("4h")


def quiet_week(seed: int, sessions: int = 20000) -> pd.DataFrame:
    """A simulated week of 20,000 sessions (or `sessions`) without incidents."""
    return sessions_frame(generate_fleet(seed=seed, sessions=sessions, span="7d", end=END,
                                         incidents=False).sessions)


def failing_all_week(df: pd.DataFrame, column: str, value: str, rate: float,
                     seed: int | list[int]) -> pd.DataFrame:
    """The ranking of `df` with `rate` of the unit's sessions failing all week."""
    unit = (df[column] == value).fillna(False)
    plant(df, unit, df["start_time"].min().floor("1h"), 7 * 24 + 1, rate, seed=seed)
    return analysis.rank_suspects(df)


def assert_named_first(ranked: pd.DataFrame, level: str, unit: str) -> None:
    top = ranked.iloc[0]
    assert (top["level"], top["unit"]) == (level, unit)
    assert top["flagged"] and top["q_value"] < 0.01


def test_a_four_hour_provider_outage_is_found_first_in_its_window_on_19_of_20_fleets():
    """The method before the calibrated scan: 4 of 10 such fleets."""
    missed = []
    for seed in range(20):
        df, names, start, end = provider_outage(seed)
        ranked = analysis.rank_suspects(df)
        if not found_first(ranked, names, start, end):
            missed.append((seed, ranked.iloc[0][["level", "unit", "q_value", "window_start"]].tolist()))
    assert len(missed) <= 1, missed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_one_hour_outage_on_a_fifth_of_a_50000_session_week_is_found_first(seed):
    df = sessions_frame(generate_fleet(seed=seed, sessions=50_000, span="7d", end=END,
                                       incidents=False).sessions)
    shares = df["avatar_version"].value_counts(normalize=True)
    avatar = str((shares - 0.2).abs().idxmin())
    assert 0.15 < shares[avatar] < 0.25
    start = df["start_time"].min().ceil("1h") + pd.Timedelta(hours=40 + 31 * seed)
    plant(df, df["avatar_version"] == avatar, start, 1, 0.60, seed)
    ranked = analysis.rank_suspects(df)
    assert found_first(ranked, {("avatar_version", avatar)}, start, start + HOUR), ranked.head(3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_fleet_wide_outage_is_named_fleet_wide_and_blames_no_unit(seed):
    fleet = generate_fleet(seed=seed, sessions=20_000, span="7d", end=END, incidents={"fleet"})
    (inc,) = fleet.incidents
    ranked = analysis.rank_suspects(sessions_frame(fleet.sessions))
    heads = ranked[ranked["flagged"] & (ranked["q_value"] < 0.01)]
    assert list(heads["level"]) == ["fleet"], heads[["level", "unit", "q_value"]]
    top = heads.iloc[0]
    # The hourly window holding the 40 minutes (an outage 4 minutes into an hour may be
    # located in the next one, where most of it lies).
    assert abs(top["window_start"] - pd.Timestamp(inc.start)) <= HOUR
    assert top["window_start"] < pd.Timestamp(inc.end) and top["window_end"] > pd.Timestamp(inc.start)
    assert top["window_end"] - top["window_start"] <= 2 * HOUR
    assert top["excess_failures"] > 10 and top["customers"] > 1
    assert "every region, version and provider" in top["finding"]
    assert f"about {round(top['excess_failures'])} more failed sessions than expected" in top["finding"]
    summary = analysis.summarize_suspects(ranked).splitlines()
    assert summary[0].startswith("Engine, provider or client? The whole fleet at once")
    (finding,) = analysis.suspect_findings(ranked)
    assert finding["level"] == "fleet" and finding["scope"] == "window"
    assert finding["customers"] == top["customers"] and finding["window"]["hours"] >= 1


def test_a_fleet_wide_hour_is_not_given_to_a_unit_of_a_handful_of_sessions_failing_by_chance():
    """Everyone fails five times as often for an hour; a persona of 40 sessions a week has 7 in
    that hour, 6 of them failed. Its rate is far above the rest's rise, but on 7 sessions it is
    no reason to call the window that persona's: the hour is the whole fleet's."""
    df = quiet_week(4)
    start = df["start_time"].min().ceil("1h") + pd.Timedelta("80h")
    end = start + HOUR
    plant(df, pd.Series(True, index=df.index), start, 1, 0.17, seed=4)
    ended = ~df["is_active"]
    inside = ended & (df["start_time"] >= start) & (df["start_time"] < end)
    rng = np.random.default_rng(4)
    few = rng.choice(df.index[inside], 7, replace=False)
    usual = df.loc[ended & (df["exit_status"] != "ERROR"), "exit_status"].mode()[0]
    df.loc[few, "exit_status"] = ["ERROR"] * 6 + [usual]
    others = rng.choice(df.index[ended & ~inside], 33, replace=False)
    df.loc[others, "exit_status"] = ["ERROR"] + [usual] * 32
    df["persona_name"] = df["persona_name"].astype("object")
    df.loc[[*few, *others], "persona_name"] = "Ines"
    ranked = analysis.rank_suspects(df)
    assert found_first(ranked, {("fleet", "all sessions")}, start, end), \
        ranked[["level", "unit", "flagged", "q_value", "window_start"]].head(3)
    assert not ranked.loc[ranked["unit"] == "Ines", "flagged"].any()


def test_quiet_fleets_raise_no_headline_in_at_least_95_percent_of_40_seeds():
    """Measured: none of 40 at 8,000 sessions (nor of 40 at 2,000, the suite's other test)."""
    noisy = []
    for seed in range(40):
        df = sessions_frame(generate_fleet(seed=100 + seed, sessions=8000, end=END,
                                           incidents=False).sessions)
        ranked = analysis.rank_suspects(df)
        if (ranked["flagged"] & (ranked["q_value"] < 0.01)).any():
            noisy.append(seed)
    assert len(noisy) <= 2, noisy


def cycling_fleet(seed: int, sessions: int = 20000, swing: float = 0.9,
                  outage: tuple[str, float] | None = None) -> tuple[pd.DataFrame, pd.Timestamp]:
    """A week in which the whole fleet fails with a daily cycle: each session fails (ERROR)
    with probability 3.5 % × (1 + swing·sin(2π·h/24)) at its UTC hour h (0.35 % to 6.7 % with
    the defaults), whatever its unit. Busy days (traffic peaking at 12:00–24:00 UTC), providers,
    LLMs, personas, pods replaced twice, a version rolled out mid-week, SDKs, customers drawn
    independently of the hour. `outage` (provider, rate): that provider's sessions fail at that
    rate for 4 hours in the daytime of a random day. Returns the frame and the outage's start."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(END) - pd.Timedelta("7D")
    hours = np.arange(7 * 24)
    busy = 0.25 + 0.75 * np.clip(np.sin(2 * np.pi * (hours % 24 - 6) / 24), 0, None)
    t = rng.choice(hours, size=sessions, p=busy / busy.sum()) * 3600 + rng.uniform(0, 3600, sessions)
    when = start + pd.to_timedelta(t, unit="s")
    provider = rng.choice(["ELEVENLABS", "CARTESIA", "AZURE"], sessions, p=[0.45, 0.35, 0.2])
    columns = {
        "tts_provider": provider,
        "llm_model": rng.choice(["gpt-4.1-mini", "claude-haiku", "llama-70b"], sessions, p=[0.5, 0.3, 0.2]),
        "persona_name": rng.choice([f"persona-{i}" for i in range(6)], sessions),
        "engine_pod": [f"engine-{g}-{k}" for g, k in zip(np.minimum(t // (7 * 86400 / 3), 2).astype(int),
                                                           rng.integers(0, 6, sessions))],
        "engine_version": np.where(t > 3.5 * 86400, "v2.0.1", "v2.0.0"),
        "sdk_version": rng.choice(["1.2.0", "1.3.0", "1.4.0"], sessions),
        "client_label": [f"customer-{c}" for c in rng.zipf(1.6, sessions) % 30],
    }
    rate = 0.035 * (1 + swing * np.sin(2 * np.pi * when.hour.to_numpy() / 24))
    began = start + pd.Timedelta(hours=int(rng.integers(1, 6)) * 24 + int(rng.integers(12, 18)))
    if outage is not None:
        inside = (provider == outage[0]) & (when >= began) & (when < began + pd.Timedelta("4h"))
        rate = np.where(inside, outage[1], rate)
    failed = rng.random(sessions) < rate
    df = pd.DataFrame({"start_time": when, "is_active": False,
                       "exit_status": np.where(failed, "ERROR", "NORMAL_EXIT"), **columns},
                      index=pd.Index([f"s{seed}-{i}" for i in range(sessions)], name="id"))
    return df.sort_values("start_time"), began


def test_quiet_fleets_failing_with_a_daily_cycle_raise_no_headline_in_95_percent_of_40_seeds():
    """Many fleets fail more at their busiest hours every day. Against its own flat history
    the whole fleet looks like it had an outage every day, and a version rolled out at midnight
    (compared with the rest of its day, mostly afternoon) like a bad release: 32 of 40 such
    weeks raised a headline before the daily cycle was allowed for. Measured now: none of 40."""
    noisy = []
    for seed in range(40):
        ranked = analysis.rank_suspects(cycling_fleet(300 + seed)[0])
        heads = ranked[ranked["flagged"] & (ranked["q_value"] < 0.01)]
        if len(heads):
            noisy.append((seed, list(zip(heads["level"], heads["unit"]))))
    assert len(noisy) <= 2, noisy


def test_an_outage_in_a_fleet_with_a_daily_cycle_is_still_found_first():
    """A provider carrying 45 % of the traffic failing 40 % for 4 hours, in weeks whose whole
    fleet fails with a daily cycle: allowing for the cycle does not explain the outage away
    (it is no time of day's). Measured: 20 of 20."""
    found = 0
    for seed in range(20):
        df, began = cycling_fleet(400 + seed, outage=("ELEVENLABS", 0.4))
        found += found_first(analysis.rank_suspects(df), {("tts_provider", "ELEVENLABS")}, began,
                             began + pd.Timedelta("4h"))
    assert found >= 19, found


def test_the_daily_cycle_is_told_from_the_other_days_and_is_flat_without_one():
    """Hourly counts of 14 days: a fleet failing 2 % at night and 6 % by day gets a cycle near
    those (0.5 and 1.5 of its 4 %); an outage on one day does not raise what that day's own
    hours are expected to fail; a fleet failing 4 % at every hour gets a cycle of 1."""
    rng = np.random.default_rng(3)
    slots = day_slots(pd.Timestamp("2026-04-06", tz="UTC").value, HOUR.value, 14 * 24)
    assert slots is not None and list(slots[:3]) == [0, 1, 2] and slots[24] == 0
    assert day_slots(0, HOUR.value, 2 * 24) is None          # under three days: no cycle to tell
    assert day_slots(0, pd.Timedelta("7h").value, 100) is None   # buckets that do not divide a day
    n = rng.poisson(400, size=(1, 14 * 24))
    day = (slots >= 8) & (slots < 20)
    x = rng.binomial(n, np.where(day, 0.06, 0.02))
    x[0, 24 * 5 + 3] = n[0, 24 * 5 + 3] // 2                   # one night hour: half failed
    cycle = daily_cycle(n, x, slots)[0]
    assert abs(np.median(cycle[day]) - 1.5) < 0.1 and abs(np.median(cycle[~day & (slots != 3)]) - 0.5) < 0.1
    assert cycle[24 * 5 + 3] < 0.7                            # its own day left out
    flat = daily_cycle(n, rng.binomial(n, 0.04), slots)[0]
    assert np.abs(flat - 1).max() < 0.1
    assert daily_cycle(n, x, None) is None


def test_window_p_values_are_uniform_on_quiet_counts_with_a_daily_cycle():
    """400 quiet units of a fleet whose every unit fails 1 % at night and 7 % by day, scanned
    with the daily cycle allowed for: their p-values are uniform (KS), 2-9 % below 0.05."""
    rng = np.random.default_rng(2)
    units, buckets = 400, 168
    slots = np.arange(buckets) % 24
    rate = 0.04 * (1 + 0.75 * np.sin(2 * np.pi * slots / 24))
    sessions = rng.poisson(rng.choice([2, 5, 10, 30], units)[:, None] * np.ones(buckets)[None, :])
    failures = rng.binomial(sessions, rate[None, :])
    fleet_n = sessions.sum(axis=0) * 3
    fleet_x = rng.binomial(fleet_n - sessions.sum(axis=0), rate) + failures.sum(axis=0)
    p = scan_level(sessions, failures, fleet_n, fleet_x, level="quiet", slots=slots).p_value
    assert stats.kstest(p, "uniform").pvalue > 0.05
    assert 0.02 < (p < 0.05).mean() < 0.09


def test_window_p_values_are_uniform_on_quiet_counts():
    """400 units with no incident (diurnal traffic, 4 % failures) scanned by the same code the
    ranking runs: their p-values pass a Kolmogorov-Smirnov test for uniformity, and 5 % of
    them (not fewer, not more) fall below 0.05. Measured: KS p = 0.12, 6 % below 0.05."""
    rng = np.random.default_rng(1)
    units, buckets = 400, 168
    diurnal = 1 + 0.7 * np.sin(np.arange(buckets) / 24 * 2 * np.pi)
    sessions = rng.poisson(rng.choice([2, 5, 10, 30], units)[:, None] * diurnal[None, :])
    failures = rng.binomial(sessions, 0.04)
    fleet_n = sessions.sum(axis=0) * 3
    fleet_x = rng.binomial(fleet_n - sessions.sum(axis=0), 0.04) + failures.sum(axis=0)
    p = scan_level(sessions, failures, fleet_n, fleet_x, level="quiet").p_value
    assert stats.kstest(p, "uniform").pvalue > 0.05
    assert 0.02 < (p < 0.05).mean() < 0.09


def test_a_units_window_p_value_does_not_depend_on_the_units_scanned_with_it():
    """Each unit simulates from its own random stream (its level and label): scanned alone,
    or with others in another order, it gets the same p-value; another label, another draw."""
    rng = np.random.default_rng(3)
    units, buckets = 30, 96
    sessions = rng.poisson(rng.choice([5, 20], units)[:, None] * np.ones(buckets))
    failures = rng.binomial(sessions, 0.05)
    fleet_n = sessions.sum(axis=0) * 2
    fleet_x = rng.binomial(fleet_n - sessions.sum(axis=0), 0.05) + failures.sum(axis=0)
    labels = [f"pod-{i}" for i in range(units)]
    together = scan_level(sessions, failures, fleet_n, fleet_x, level="engine_pod", labels=labels)
    some = np.array([17, 4, 22, 9])
    apart = scan_level(sessions[some], failures[some], fleet_n, fleet_x, level="engine_pod",
                       labels=[labels[i] for i in some])
    np.testing.assert_array_equal(apart.p_value, together.p_value[some])
    simulated = together.p_value < 1
    assert simulated.sum() > 10
    renamed = scan_level(sessions, failures, fleet_n, fleet_x, level="engine_pod",
                         labels=[f"other-{i}" for i in range(units)])
    assert (renamed.p_value[simulated] != together.p_value[simulated]).all()


def test_window_p_values_are_valid_on_quiet_simulated_fleets():
    """Every unit with at least 20 failures on ten quiet week-long fleets of 8,000 sessions:
    no more of them fall below 1 %, 5 % and 10 % than those shares (the reported p_window
    counts only windows that also beat the same-time rest, so it is uniform or larger)."""
    p_values = []
    for seed in range(10):
        df = sessions_frame(generate_fleet(seed=200 + seed, sessions=8000, end=END,
                                           incidents=False).sessions)
        ranked = analysis.rank_suspects(df)
        p_values += list(ranked.loc[(ranked["failures"] >= 20) & (ranked["level"] != "fleet"),
                                    "p_window"])
    p = np.array(p_values)
    assert len(p) > 300
    for alpha in (0.01, 0.05, 0.10):
        assert (p < alpha).mean() <= alpha * 1.5 + 0.005, (alpha, (p < alpha).mean())


def test_counts_hold_every_session_once_per_level():
    df = sessions_frame(generate_fleet(seed=0, sessions=2000, end=END, incidents=False).sessions)
    ended = df[~df["is_active"]]
    origin = ended["start_time"].min().floor("1h")
    bucket = ((ended["start_time"] - origin) // HOUR).to_numpy()
    fail = (ended["exit_status"] == "ERROR").to_numpy()
    codes, names = {}, {}
    for col in ("engine_pod", "tts_provider"):
        c, u = pd.factorize(ended[col])
        codes[col], names[col] = c.astype(np.int64), np.array([str(v) for v in u], dtype=object)
    counts = count_sessions(bucket, fail, codes, names, origin, HOUR, int(bucket.max()) + 1)
    assert counts.fleet_sessions.sum() == len(ended) and counts.fleet_failures.sum() == fail.sum()
    provider = counts.levels["tts_provider"]
    assert provider.sessions.sum() == ended["tts_provider"].notna().sum()
    first = provider.units[0]
    assert provider.failures[0].sum() == int(((ended["tts_provider"] == first) & fail).sum())


def test_explain_session_names_the_outage_a_failed_session_fell_in():
    df, names, start, end = provider_outage(2)
    ranked = analysis.rank_suspects(df)
    assert found_first(ranked, names, start, end)
    top = ranked.iloc[0]
    inside = df[(df["tts_provider"] == top["unit"]) & (df["start_time"] >= top["window_start"])
                & (df["start_time"] < top["window_end"]) & (df["exit_status"] == "ERROR")]
    text = an.explain_session(inside.index[0], ranked, df)
    assert f"is one of {top['window_failures']} failed {top['unit']} sessions in the" in text
    assert f"about {round(top['excess_failures'])} more than expected" in text
    # The same from the findings as a report keeps them (plain dicts).
    assert an.explain_session(inside.index[0], analysis.suspect_findings(ranked), df) == text
    healthy = df[(df["tts_provider"] != top["unit"]) & (df["exit_status"] == "ERROR")
                 & (df["start_time"] < top["window_start"])].index[0]
    assert "falls in none of the 1 findings" in an.explain_session(healthy, ranked, df)


def test_explain_session_on_a_quiet_fleet_names_no_finding_and_how_usual_the_exit_is():
    df = sessions_frame(generate_fleet(seed=5, sessions=8000, end=END, incidents=False).sessions)
    ranked = analysis.rank_suspects(df)
    failed = df[df["exit_status"] == "ERROR"].index[0]
    text = an.explain_session(failed, ranked, df)
    assert "falls in no finding" in text and "ERROR is a usual failure here" in text
    assert "of the fleet's sessions that hour" in text
    with pytest.raises(KeyError, match="not in the frame"):
        an.explain_session("00000000-0000-4000-8000-000000000000", ranked, df)


def test_the_lookup_card_says_which_finding_a_session_falls_in():
    from anam_notebooks.simulator import create_app, demo_client
    from anam_notebooks.widgets import SessionLookup

    fleet = generate_fleet(seed=2, sessions=8000, span="7d", end=END, incidents={"provider"})
    df = sessions_frame(fleet.sessions)
    ranked = analysis.rank_suspects(df)
    top = ranked.iloc[0]
    assert (top["level"], top["unit"]) == ("tts_provider", "CARTESIA") and top["q_value"] < 0.01
    inside = df[(df["tts_provider"] == "CARTESIA") & (df["exit_status"] == "ERROR")
                & (df["start_time"] >= top["window_start"]) & (df["start_time"] < top["window_end"])]
    card = SessionLookup(demo_client(create_app(fleet)), findings=ranked, frame=df)
    card.lookup(inside.index[0])
    assert "diagnosis" in card.card.value
    assert f"one of {top['window_failures']} failed CARTESIA sessions" in card.card.value
    # Without findings the card has no diagnosis line.
    plain = SessionLookup(demo_client(create_app(fleet))).lookup(inside.index[0])
    assert "diagnosis" not in plain.card.value


def test_a_version_failing_all_week_is_the_one_headline():
    """A version rolled out mid-week failing 40 % of its sessions (10× the fleet) makes the rest
    of the fleet's hour-to-hour swings look real while it runs; every other unit's window is
    scanned again without it, so no replicaset of another version is blamed beside it."""
    ranked = failing_all_week(quiet_week(0), "engine_version", "v5.1.1", 0.375, seed=0)
    heads = ranked[ranked["flagged"]]
    assert list(zip(heads["level"], heads["unit"])) == [("engine_version", "v5.1.1")]


def test_a_fleet_wide_outage_while_one_version_serves_everyone_is_the_fleets():
    """Four hours in which one version served every session (2 of 289 had none recorded),
    all of them failing 40 %: the version is the fleet at that time, so the finding is the
    whole fleet's, in its window, and the version is not blamed by its whole-period rate."""
    df = quiet_week(1)
    start = pd.Timestamp("2026-04-15T01:00Z")
    during = (df["start_time"] >= start) & (df["start_time"] < start + 4 * HOUR)
    assert (df.loc[during, "engine_version"].dropna() == "v5.0.3").all()
    plant(df, pd.Series(True, index=df.index), start, 4, 0.375, seed=1)
    ranked = analysis.rank_suspects(df)
    top = ranked.iloc[0]
    assert top["level"] == "fleet" and top["flagged"] and top["q_value"] < 0.01
    assert abs(top["window_start"] - start) <= HOUR and abs(top["window_end"] - start - 4 * HOUR) <= HOUR
    assert not ranked.loc[ranked["flagged"], "level"].isin(["engine_version"]).any()


def test_a_version_failing_all_week_is_named_not_the_fleet_in_the_days_it_ran_alone():
    """A version failing 5× all week that served every session for two days looks fleet-wide
    then; outside those days it failed more than the versions beside it, so the finding is the
    version's and no fleet-wide window is blamed."""
    df = quiet_week(4)
    alone = (df["engine_version"] == "v5.1.0").groupby(df["start_time"].dt.floor("1h")).mean() == 1
    assert alone.sum() >= 24   # a day and more alone
    ranked = failing_all_week(df, "engine_version", "v5.1.0", 1 / 6, seed=[4, 168, 20, 5])
    assert_named_first(ranked, "engine_version", "v5.1.0")
    assert not ranked.loc[ranked["flagged"], "level"].eq("fleet").any()


def test_a_replicaset_failing_while_it_was_all_of_its_region_is_named_not_the_region():
    """A replicaset failing 5× all its life, the only one of its region while it lived: the
    region's other hours show a chance excess (p < 0.05), which is no reason to name the
    region for the replicaset's outage."""
    ranked = failing_all_week(quiet_week(6), "engine_replicaset", "anam-engine-4htr62gscd", 1 / 6,
                              seed=[6, 168, 20, 5])
    assert_named_first(ranked, "engine_replicaset", "anam-engine-4htr62gscd")


def test_a_version_failing_all_week_is_not_narrowed_to_the_replicaset_that_rolled_it_out():
    """A version failing 5× all week, rolled out two days before the end and then serving every
    session: only its first replicaset ran beside other versions, so the rest of the version
    has nobody to be compared with and shows no excess. That is no sign the replicaset carries
    it all (its own evidence is a small part of the version's), so the version is named."""
    ranked = failing_all_week(quiet_week(15), "engine_version", "v5.1.1", 1 / 6, seed=[15, 168, 20, 5])
    assert_named_first(ranked, "engine_version", "v5.1.1")


def test_a_fleet_wide_hour_is_not_given_to_a_version_serving_nearly_all_of_it():
    """An hour in which everyone failed about 20 %, while one version served all but a handful
    of the sessions: those few beside it failed like everyone, too few to tell "this version"
    from "the whole fleet", so the finding is the fleet's, in its hour."""
    df = quiet_week(0)
    start = pd.Timestamp("2026-04-15T20:00Z")
    during = (df["start_time"] >= start) & (df["start_time"] < start + HOUR)
    top_version = df.loc[during, "engine_version"].value_counts(normalize=True).iloc[0]
    assert 0.9 < top_version < 0.95   # nearly all, yet not the fleet by itself
    plant(df, pd.Series(True, index=df.index), start, 1, 1 / 6, seed=1)
    ranked = analysis.rank_suspects(df)
    top = ranked.iloc[0]
    assert top["level"] == "fleet" and top["flagged"] and top["q_value"] < 0.01
    assert abs(top["window_start"] - start) <= HOUR and abs(top["window_end"] - start - HOUR) <= HOUR
    assert not ranked.loc[ranked["flagged"], "level"].isin(["engine_version"]).any()


def test_a_pod_failing_all_its_life_is_named_not_the_fleet_in_the_days_it_lived():
    """A pod failing 5× all its life (three and a half days of the week) lifts the whole
    fleet's rate in those days, and the rest of the fleet happened to fail a little more then
    too (p = 1e-4 inside against outside). That is no fleet-wide window: the window was chosen
    among every window, and scanned again without the pod and the units failing with it the
    rest is nowhere near a headline's strength. The pod is named and no fleet-wide window."""
    pod = "anam-engine-twj7hcrr6l-5blxr"
    ranked = failing_all_week(quiet_week(18), "engine_pod", pod, 1 / 6, seed=6)
    assert_named_first(ranked, "engine_pod", pod)
    assert not ranked.loc[ranked["flagged"], "level"].eq("fleet").any()


def test_a_version_failing_all_its_life_is_named_not_the_units_that_rose_with_it():
    """A version failing 5× from its rollout two days before the end, then serving nearly every
    session: the whole fleet, every region and both providers fail more in those days, and
    the provider most of whose traffic the version served has more evidence of a window than
    the version. The window is the version's life (it failed beyond the rest before it too), so
    the version is named, and not the provider, a model or a region that rose with it."""
    ranked = failing_all_week(quiet_week(19), "engine_version", "v5.1.1", 1 / 6, seed=[19, 168, 5, 5])
    assert_named_first(ranked, "engine_version", "v5.1.1")
    heads = ranked[ranked["flagged"]]
    assert list(zip(heads["level"], heads["unit"])) == [("engine_version", "v5.1.1")]


def test_a_clear_provider_outage_is_not_handed_to_an_llm_less_clear_than_it():
    """A TTS provider failing 5× for four night hours (q < 0.001): one LLM happened to be
    nearly all of its traffic then, and the rest of the provider, a handful of sessions, shows
    no excess. Narrowed to that LLM (q = 0.02) the outage was lost: a clear finding is only
    narrowed to a unit inside it that is as clear (q < 0.01)."""
    df = quiet_week(11)
    rng = np.random.default_rng([11, 4, 20, 5])
    start = df["start_time"].min().ceil("1h") + pd.Timedelta(hours=int(rng.integers(6, 159)))
    assert start == pd.Timestamp("2026-04-14T05:00Z")
    hit = ((df["tts_provider"] == "CARTESIA").fillna(False) & (df["start_time"] >= start)
           & (df["start_time"] < start + 4 * HOUR) & ~df["is_active"])
    df.loc[hit & (rng.random(len(df)) < 1 / 6), "exit_status"] = "ERROR"
    ranked = analysis.rank_suspects(df)
    assert found_first(ranked, {("tts_provider", "CARTESIA"), ("tts_model", "sonic-2")}, start, start + 4 * HOUR)


def test_a_version_failing_5x_until_it_was_retired_is_named_not_the_fleet():
    """A version failing 5× all week that served 98 % of the sessions until it was retired two
    and a half days in: the whole fleet fails more in those days, every region and provider
    with it. The 107 sessions of the version beside it failed at 8 %, a quarter of its rate:
    the window is the version's life, and the version is named, not the fleet."""
    ranked = failing_all_week(quiet_week(0), "engine_version", "v5.0.3", 1 / 6, seed=[0, 168, 50, 5])
    assert_named_first(ranked, "engine_version", "v5.0.3")
    assert not ranked.loc[ranked["flagged"], "level"].eq("fleet").any()


def test_a_version_whose_life_is_the_window_is_named_not_the_fleet():
    """A 2,000-session week: a version failing 5× all week served every session of its two and
    a half days and had 17 sessions after. Nothing ran beside it and almost nothing outside
    it, so only the window's edges tell: they are its rollout and its retirement."""
    ranked = failing_all_week(quiet_week(11, 2000), "engine_version", "v5.0.3", 1 / 6, seed=[11, 168, 20, 5])
    assert_named_first(ranked, "engine_version", "v5.0.3")


def test_a_version_that_failed_before_it_served_everyone_is_named_not_the_fleet():
    """A 2,000-session week: a version failing 5× all week served every session of its last two
    days; in the 11 hours before, beside the others, 11 of its 87 sessions failed against 4 %
    (p = 0.003). That is its own excess: the version is named, not the fleet."""
    ranked = failing_all_week(quiet_week(0, 2000), "engine_version", "v5.1.1", 1 / 6, seed=[0, 168, 20, 5])
    assert_named_first(ranked, "engine_version", "v5.1.1")


def test_headlines_are_ordered_by_their_lift_over_the_fleet_not_over_their_own_quiet_hours():
    """The demo's fleet ending 2026-12-05 20:08 UTC: a healthy pod failed 10 of 55 sessions in two
    hours by chance, against 1 of 181 of its own the rest of the time (a lift of 36 over its own
    history). The planted causes, failing 5-10 times their peers' rate, lead it."""
    fleet = generate_fleet(seed=0, sessions=20_000, span="24h", end=datetime(2026, 12, 5, 20, 8, tzinfo=UTC))
    planted = {(i.column, i.value) for i in fleet.incidents}
    ranked = analysis.rank_suspects(sessions_frame(fleet.sessions))
    headlines = ranked[ranked["flagged"]]
    assert (headlines.iloc[0]["level"], headlines.iloc[0]["unit"]) in planted, headlines.head(3)
    chance = headlines[headlines["unit"] == "anam-engine-cwmjp69ft2-jkjh6"]
    if len(chance):   # a chance cluster may stand out, but after every planted cause
        assert chance.index[0] > max(i for i, row in headlines.iterrows()
                                     if (row["level"], row["unit"]) in planted)


def test_a_cause_failing_all_week_is_told_over_the_whole_period_not_by_its_worst_hours():
    """An SDK failing 20 % of its sessions all week: its evidence and its excess are the whole
    week's, so the sentence leads with the week (not with eight worst hours, which would put
    a thousand extra failures inside 272 sessions) and names the worst hours after."""
    df = quiet_week(0)
    sdk = "@anam-ai/js-sdk@3.5.2"
    ranked = failing_all_week(df, "sdk_version", sdk, 0.2, seed=0)
    assert_named_first(ranked, "sdk_version", sdk)
    top = ranked.iloc[0]
    assert top["p_whole"] < top["p_window"]
    sentence = top["finding"]
    assert sentence.startswith(f"sdk_version {sdk} failed {round(100 * top['rate'])} % of "
                               f"{top['sessions']} sessions over the whole period"), sentence
    excess = round(top["failures"] - top["baseline"] * top["sessions"])
    assert f"about {excess} more failed sessions than expected" in sentence
    worst = f"({top['window_failures']} of {top['window_sessions']})"
    assert sentence.index(worst) > sentence.index("more failed sessions"), sentence
    assert analysis.suspect_findings(ranked)[0]["scope"] == "period"
