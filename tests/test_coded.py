"""Sessions as integer codes (`analysis.coded`), what `rank_suspects` reads of every row: the
frame and the dataset give the same codes whatever the row order or chunking, counts per unit and
hour match pandas' own crosstab even with thousands of units (no overflow of small codes),
hostile rows (active, no start, no status, odd labels) are left out or counted as the frame's
rules say, and the ranking's questions about the sessions behind those codes get pandas' answers
whatever was asked before."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

import anam_notebooks as an
from anam_notebooks import analysis, sessions_frame
from anam_notebooks.analysis.coded import coded_sessions
from anam_notebooks.analysis.counts import count_sessions
from anam_notebooks.analysis.stats import stratified_excess
from anam_notebooks.analysis.suspects import _modal, _sessions
from anam_notebooks.data.store import SessionStore
from anam_notebooks.simulator import generate_fleet

END = datetime(2026, 4, 20, 12, tzinfo=UTC)
LEVELS = ["engine_pod", "tts_provider", "client_label", "persona_name"]


def _hostile(seed: int = 3, sessions: int = 4000) -> pd.DataFrame:
    """A simulator week with 2,000 distinct client labels and rows the ranking must skip."""
    df = sessions_frame(generate_fleet(seed=seed, sessions=sessions, span="7d", end=END).sessions)
    rng = np.random.default_rng(seed)
    df["client_label"] = pd.Categorical([f"customer-{i}" for i in rng.integers(0, 2000, len(df))])
    df.loc[df.index[:40], "start_time"] = pd.NaT          # no start: left out
    df.loc[df.index[40:80], "exit_status"] = None          # no status: never a failure
    df.loc[df.index[80:120], "engine_pod"] = None          # no unit at this level
    odd = "naïve \u202e label"
    df["persona_name"] = df["persona_name"].cat.add_categories([odd])
    df.loc[df.index[120:130], "persona_name"] = odd
    return df


def _store(tmp_path, df: pd.DataFrame):
    store = SessionStore(tmp_path / "cache", base_url="http://127.0.0.1:9", organization_id="org")
    store.merge(df)
    return an.session_dataset(tmp_path / "cache"), store.load()


def test_frame_and_dataset_give_the_same_codes_in_any_order_and_chunking(tmp_path):
    ds, frame = _store(tmp_path, _hostile())
    a = coded_sessions(frame, LEVELS)
    for rows, stream in ((300, False), (1_000_000, False), (300, True), (1_000_000, True)):
        b = coded_sessions(ds, LEVELS, batch_rows=rows, stream=stream)   # hour chunks, or streamed
        order_a, order_b = np.lexsort((a.customer, a.start_ns)), np.lexsort((b.customer, b.start_ns))
        np.testing.assert_array_equal(a.start_ns[order_a], b.start_ns[order_b])
        np.testing.assert_array_equal(a.fail[order_a], b.fail[order_b])
        for level in LEVELS:
            assert list(a.names[level]) == list(b.names[level]) == sorted(a.names[level])
            np.testing.assert_array_equal(a.codes[level][order_a], b.codes[level][order_b])
        assert len(np.unique(a.customer)) == len(np.unique(b.customer))
    ended = frame[~frame.is_active & frame.start_time.notna()]
    assert len(a) == len(ended)
    assert a.fail.sum() == analysis.is_failure(ended.exit_status).sum()
    assert (a.codes["engine_pod"] == -1).sum() == ended.engine_pod.isna().sum()
    shuffled = coded_sessions(frame.sample(frac=1, random_state=1), LEVELS)
    assert all(list(shuffled.names[lv]) == list(a.names[lv]) for lv in LEVELS)


def test_counts_per_unit_and_hour_match_pandas_with_thousands_of_units():
    df = _hostile()
    coded = coded_sessions(df, LEVELS)
    assert coded.codes["client_label"].dtype == np.int16   # small codes: widened before arithmetic
    step = pd.Timedelta("1h").value
    origin = coded.start_ns.min() // step * step
    bucket = (coded.start_ns - origin) // step
    buckets = int(bucket.max()) + 1
    assert len(coded.names["client_label"]) * buckets > 2 ** 15   # would overflow int16
    counts = count_sessions(bucket, coded.fail, coded.codes, coded.names,
                            pd.Timestamp(origin, tz="UTC"), pd.Timedelta("1h"), buckets)
    ended = df[~df.is_active & df.start_time.notna()]
    hour = ((ended.start_time - pd.Timestamp(origin, tz="UTC")) // pd.Timedelta("1h")).to_numpy()
    failed = analysis.is_failure(ended.exit_status)
    for level in ("client_label", "engine_pod"):
        expected = pd.crosstab(ended[level].astype(object), hour)
        got = counts.levels[level]
        table = pd.DataFrame(got.sessions, index=got.units).loc[expected.index, expected.columns]
        np.testing.assert_array_equal(table.to_numpy(), expected.to_numpy())
        expected_x = pd.crosstab(ended[level].astype(object)[failed], hour[failed])
        table_x = pd.DataFrame(got.failures, index=got.units).loc[expected_x.index, expected_x.columns]
        np.testing.assert_array_equal(table_x.to_numpy(), expected_x.to_numpy())
        assert got.failures.sum() == failed[ended[level].notna().to_numpy()].sum()
    assert counts.fleet_sessions.sum() == len(ended) and counts.fleet_failures.sum() == failed.sum()


def test_a_callable_failure_rule_is_applied_once_per_status(tmp_path):
    ds, frame = _store(tmp_path, _hostile(sessions=1500))
    seen: list[str] = []

    def rule(status):
        seen.append(status)
        return status in ("ERROR", "TIMEOUT")

    coded = coded_sessions(ds, ["tts_provider"], failures=rule)
    assert len(seen) == len(set(seen)) and set(seen) <= set(frame.exit_status.dropna())
    ended = frame[~frame.is_active & frame.start_time.notna()]
    assert coded.fail.sum() == ended.exit_status.isin(["ERROR", "TIMEOUT"]).sum()


def test_a_missing_level_is_named(tmp_path):
    ds, _ = _store(tmp_path, _hostile(sessions=500))
    with pytest.raises(KeyError, match="'engine_colour' is not in the dataset"):
        coded_sessions(ds, ["engine_colour"])


def test_the_session_questions_give_the_same_answers_whatever_was_asked_before():
    """The ranking keeps the counts and tests of the sessions outside a set of units, and builds
    a set's from one asked before (a unit more or fewer). Asked in a shuffled order, every answer
    is pandas' own count of the sessions outside those units, every test the one on pandas' counts,
    and every overlap and share pandas' own."""
    df = _hostile(sessions=3000)
    ended = df[~df.is_active & df.start_time.notna()]
    hour, fail = pd.Timedelta("1h"), np.asarray(analysis.is_failure(ended.exit_status), dtype=bool)

    s = _sessions(coded_sessions(ended, LEVELS), hour, 20)
    bucket = ((ended.start_time - s.origin) // hour).to_numpy()
    keys = [(level, code) for level in ("tts_provider", "engine_pod", "persona_name")
            for code in range(min(3, len(s.names[level])))]

    def inside(key: tuple[str, int]) -> np.ndarray:
        return (ended[key[0]] == s.names[key[0]][key[1]]).fillna(False).to_numpy(dtype=bool)

    strata = s.bucket_strata()[bucket]

    def expected_p(key: tuple[str, int], kept: np.ndarray) -> float:
        """The stratified test of the unit's kept sessions against every kept session."""
        size = int(strata.max()) + 1
        unit = kept & inside(key)
        n, x = np.bincount(strata[unit], minlength=size), np.bincount(strata[unit & fail], minlength=size)
        pool_n = np.bincount(strata[kept], minlength=size)
        pool_x = np.bincount(strata[kept & fail], minlength=size)
        used = n > 0
        if not used.any():
            return 1.0
        return float(stratified_excess(n[used], x[used], pool_n[used], pool_x[used],
                                       np.zeros(int(used.sum()), np.int64), 1)[0][0])

    rng = np.random.default_rng(4)
    base = [keys[i] for i in rng.choice(len(keys), 3, replace=False)]
    others = [k for k in keys if k not in base]
    asked = [tuple(base), tuple(base[:2]), tuple(base + others[:1]), tuple(base + others[:2]),
             tuple(base[1:] + others[:1]), (others[2],), tuple(others[:1] + base), tuple(base[::-1])]
    for at in rng.permutation(len(asked)):
        exclude = asked[at]
        out = np.logical_or.reduce([inside(k) for k in exclude])
        counts = s.counts(exclude)
        assert counts.fleet_sessions.sum() == (~out).sum()
        assert counts.fleet_failures.sum() == (fail & ~out).sum()
        for level in ("tts_provider", "engine_pod"):
            for code in range(len(s.names[level])):
                kept = ~out & inside((level, code))
                np.testing.assert_array_equal(counts.levels[level].sessions[code],
                                              np.bincount(bucket[kept], minlength=s.buckets))
                np.testing.assert_array_equal(counts.levels[level].failures[code],
                                              np.bincount(bucket[kept & fail], minlength=s.buckets))
        left_out, n, x = s.without(exclude)   # what the stratified test compares with
        assert left_out.sum() == out.sum()
        np.testing.assert_array_equal(n, np.bincount(s.stratum[~left_out], minlength=len(n)))
        np.testing.assert_array_equal(x, np.bincount(s.stratum[~left_out & s.fail], minlength=len(n)))
        for key in keys[:5]:
            assert s.excess_p(key, exclude) == expected_p(key, ~out)
            assert s.excess_p(key, exclude, (10, 60)) == expected_p(key, ~out & (bucket >= 10) & (bucket <= 60))
    for a in keys:
        for b in keys:
            assert s.shared(a, b) == (inside(a) & inside(b)).sum()
    table = pd.crosstab(ended["engine_pod"].astype(object), ended["tts_provider"].astype(object))
    modal, share = _modal(s.codes["engine_pod"], s.codes["tts_provider"], len(s.names["engine_pod"]),
                          len(s.names["tts_provider"]))
    for code, pod in enumerate(s.names["engine_pod"]):
        row = table.loc[pod]
        assert s.names["tts_provider"][modal[code]] == row.idxmax()
        assert share[code] == row.max() / (ended["engine_pod"] == pod).sum()
