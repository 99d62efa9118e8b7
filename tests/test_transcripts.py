"""turns_frame and the response gap on hand-made transcripts; fetch_transcripts against the
simulator: request budget, sampling, cache, and sessions without a transcript."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd
import pytest

import anam_notebooks as an
from anam_notebooks import sessions_frame
from anam_notebooks.data.fields import MalformedRecordWarning
from anam_notebooks.data.transcripts import TURN_COLUMNS, turns_frame
from anam_notebooks.fetch import TranscriptFetchWarning
from anam_notebooks.simulator import Fleet, create_app, demo_client, generate_fleet

END = datetime(2026, 4, 20, 12, tzinfo=UTC)   # fixed, so every run draws the same fleets


def _message(role, at, seconds=None, **extra):
    return {"role": role, "message": f"{role} says hi", "timestamp": at, "speakingDurationSeconds": seconds,
            **extra}


def _gaps(frame):
    return frame["response_gap"].tolist()


def test_gap_is_persona_start_minus_the_end_of_the_user_turn_before_it():
    frame = turns_frame([{"sessionId": "s1", "messages": [
        _message("persona", "2026-04-20T09:00:00Z", 2.0, wasInterrupted=False),
        _message("user", "2026-04-20T09:00:03Z", 1.5),
        _message("persona", "2026-04-20T09:00:05.25Z", 3.0, wasInterrupted=True),
    ]}])
    assert list(frame.columns) == list(TURN_COLUMNS)
    assert {c: frame[c].dtype for c in frame.columns} == TURN_COLUMNS
    assert frame["turn_index"].tolist() == [0, 1, 2]
    assert np.isnan(frame["response_gap"][0]) and np.isnan(frame["response_gap"][1])
    assert frame["response_gap"][2] == pytest.approx(0.75)       # 5.25 - (3 + 1.5)
    assert frame["interrupted"].tolist() == [False, pd.NA, True]
    assert frame["speaking_duration"][1] == pd.Timedelta(seconds=1.5)


def test_overlaps_are_kept_negative():
    frame = turns_frame([{"sessionId": "s", "messages": [
        _message("user", "2026-04-20T09:00:00Z", 4.0),
        _message("persona", "2026-04-20T09:00:03.6Z", 2.0, wasInterrupted=False),   # barge-in
    ]}])
    assert frame["response_gap"][1] == pytest.approx(-0.4)


def test_timestamps_in_odd_offsets_are_compared_in_utc():
    frame = turns_frame([{"sessionId": "s", "messages": [
        _message("user", "2026-04-20T11:00:00+02:00", 1.0),
        _message("persona", "2026-04-20T04:00:01.8-05:00", 2.0),          # 09:00:01.8Z
        _message("user", "2026-04-20T09:00:06.123456Z", 0.5),
        _message("persona", "2026-04-20T14:30:07+05:30", 1.0),            # 09:00:07Z
    ]}])
    assert frame["response_gap"][1] == pytest.approx(0.8)
    assert frame["response_gap"][3] == pytest.approx(0.376544)
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_missing_fields_give_no_gap_and_no_crash():
    messages = [
        _message("user", None, 1.0), _message("persona", "2026-04-20T09:00:02Z", 1.0),    # no user time
        _message("user", "2026-04-20T09:00:05Z", None), _message("persona", "2026-04-20T09:00:07Z"),  # no duration
        _message("user", "2026-04-20T09:00:10Z", 1.0), _message("persona", None, 1.0),    # no persona time
        _message("user", "2026-04-20T09:00:15Z", 1.0), _message("user", "2026-04-20T09:00:17Z", 1.0),
        _message("persona", "2026-04-20T09:00:19Z", 1.0),                                # answers the 2nd user turn
        _message("persona", "2026-04-20T09:00:25Z", 1.0),                                # persona after persona
        {"role": "user"}, {"message": "no role", "timestamp": "2026-04-20T09:00:30Z"},
    ]
    frame = turns_frame([{"sessionId": "s", "messages": messages}])
    gaps = _gaps(frame)
    assert [i for i, g in enumerate(gaps) if not np.isnan(g)] == [8]
    assert gaps[8] == pytest.approx(1.0)
    assert len(frame) == len(messages)


def test_hostile_and_malformed_values_are_nulled_with_a_warning_not_raised():
    messages = [
        {"role": "user", "message": "<script>alert(1)</script> \ud800", "timestamp": "2026-04-20T09:00:00Z",
         "speakingDurationSeconds": -3},                                  # negative: not a duration
        {"role": "persona", "message": {"nested": 1}, "timestamp": "not a time",
         "speakingDurationSeconds": "2", "wasInterrupted": "yes"},
        "not an object",
        {"role": "user", "message": "ok", "timestamp": "2026-04-20T09:00:10Z", "speakingDurationSeconds": 1e400},
        {"role": "persona", "message": "fine", "timestamp": "2026-04-20T09:00:12Z", "speakingDurationSeconds": True},
    ]
    with pytest.warns(MalformedRecordWarning) as caught:
        frame = turns_frame([{"sessionId": "s", "messages": messages}, "junk", {"sessionId": "t", "messages": 5}])
    text = " ".join(str(w.message) for w in caught)
    assert "speakingDurationSeconds is negative" in text and "not an object" in text
    assert frame["turn_index"].tolist() == [0, 1, 3, 4]                   # positions as the API numbered them
    assert frame["text"][0].startswith("<script>")                        # kept raw; escaping is the view's job
    assert pd.isna(frame["text"][1]) and pd.isna(frame["timestamp"][1]) and pd.isna(frame["interrupted"][1])
    assert frame["response_gap"].isna().all()                             # no pair has both times and a duration


@pytest.mark.filterwarnings("ignore::anam_notebooks.data.fields.MalformedRecordWarning")
def test_no_gap_across_a_skipped_message_or_another_session():
    frame = turns_frame([
        {"sessionId": "a", "messages": [_message("user", "2026-04-20T09:00:00Z", 1.0), 7,
                                        _message("persona", "2026-04-20T09:00:02Z", 1.0)]},
        {"sessionId": "b", "messages": [_message("persona", "2026-04-20T09:00:01.5Z", 1.0)]},
    ])
    assert frame["response_gap"].isna().all()
    assert frame["session_id"].tolist() == ["a", "a", "b"]


def test_empty_input_is_a_typed_empty_frame():
    frame = turns_frame([])
    assert frame.empty and {c: frame[c].dtype for c in frame.columns} == TURN_COLUMNS


# -- fetch_transcripts against the simulator -----------------------------------------------------

@pytest.fixture(scope="module")
def demo():
    """An app over 2,500 sessions and its sessions frame."""
    app = create_app(generate_fleet(seed=11, sessions=2500, span="3d", end=END))
    client = demo_client(app)
    sessions = an.fetch_sessions(client, progress=False)
    return app, client, sessions


def test_a_sample_of_600_sends_at_most_700_requests(demo):
    app, client, sessions = demo
    stats = app.state.simulator.stats
    stats.clear()
    turns = an.fetch_transcripts(client, sessions, sample=600, progress=False)
    assert stats["transcript"] == stats["total"] <= 700
    assert turns.attrs["sessions"] == 600 == turns.attrs["requests"]
    assert turns["session_id"].nunique() > 550
    assert (turns["response_gap"].dropna() < 0).any()
    assert turns.attrs["zero_data_retention"] == int(sessions["zero_data_retention"].fillna(False).sum()) > 0


def test_sampling_is_reproducible_and_stratified(demo):
    _, client, sessions = demo
    one = an.fetch_transcripts(client, sessions, sample=120, progress=False)
    two = an.fetch_transcripts(client, sessions, sample=120, progress=False)
    pd.testing.assert_frame_equal(one, two)
    other = an.fetch_transcripts(client, sessions, sample=120, progress=False, seed=1)
    assert set(other["session_id"]) != set(one["session_id"])

    # A version serving 3 % of the traffic still gets its equal floor of the budget.
    rare = sessions.index[sessions["engine_version"] == "v5.0.3"][:40]
    skewed = pd.concat([sessions[sessions["engine_version"] != "v5.0.3"], sessions.loc[rare]])
    picked = an.fetch_transcripts(client, skewed, sample=100, progress=False, strata=("engine_version",))
    share = sessions.loc[picked["session_id"].unique(), "engine_version"].value_counts()
    assert share["v5.0.3"] >= 100 // (2 * 4) - 1     # floor: half the budget over (3 versions + missing)


def test_cache_serves_a_second_call_without_requests(demo, tmp_path):
    app, client, sessions = demo
    stats = app.state.simulator.stats
    ended = sessions[~sessions["is_active"]]
    first = an.fetch_transcripts(client, ended, sample=200, cache=tmp_path, progress=False)
    stats.clear()
    second = an.fetch_transcripts(client, ended, sample=200, cache=tmp_path, progress=False)
    assert stats["total"] == 0
    assert second.attrs["from_cache"] == 200 and second.attrs["requests"] == 0
    pd.testing.assert_frame_equal(first, second)


def test_only_ended_sessions_are_cached(demo, tmp_path):
    app, client, sessions = demo
    active = sessions[sessions["is_active"] & ~sessions["zero_data_retention"].fillna(False)]
    assert len(active)
    an.fetch_transcripts(client, active, cache=tmp_path, progress=False)
    stats = app.state.simulator.stats
    stats.clear()
    an.fetch_transcripts(client, active, cache=tmp_path, progress=False)
    assert stats["transcript"] == len(active)


def test_404_and_disabled_transcripts_are_counted_not_raised():
    fleet = generate_fleet(seed=5, sessions=60, span="1d", end=END, incidents=False)
    keeps = [sid for sid in fleet.transcripts][:12]
    gone, disabled = keeps[:3], keeps[3]
    served = {sid: fleet.transcripts[sid] for sid in keeps if sid not in gone}
    served[disabled] = {**served[disabled], "transcriptsEnabled": False, "messages": []}
    app = create_app(Fleet(fleet.sessions, served, seed=5))
    client = demo_client(app)
    sessions = an.fetch_sessions(client, progress=False)
    turns = an.fetch_transcripts(client, sessions.loc[keeps], progress=False)
    a = turns.attrs
    assert (a["not_found"], a["transcripts_disabled"], a["failed"], a["transcripts"]) == (3, 1, 0, 8)
    assert set(turns["session_id"]) <= set(keeps[4:]) and turns["session_id"].nunique() >= 7


def test_requests_failing_after_retries_are_counted_with_a_warning_and_the_rest_kept():
    fleet = generate_fleet(seed=5, sessions=60, span="1d", end=END, incidents=False)
    sessions = sessions_frame(fleet.sessions)
    ids = [sid for sid in fleet.transcripts][:10]
    flaky = demo_client(create_app(fleet, fault_rate=0.5, seed=3), max_retries=0)
    with pytest.warns(TranscriptFetchWarning, match="could not be read after retries"):
        turns = an.fetch_transcripts(flaky, sessions.loc[ids], progress=False)
    a = turns.attrs
    assert 0 < a["failed"] < 10 and a["failed"] + a["transcripts"] == 10
    assert turns["session_id"].nunique() >= a["transcripts"] - 1


def test_a_refused_key_raises_instead_of_counting_every_session():
    fleet = generate_fleet(seed=5, sessions=30, span="1d", end=END, incidents=False)
    app = create_app(fleet)
    wrong = an.AnamClient(api_key="not-the-key", base_url="http://anam-simulator",
                          transport=httpx.ASGITransport(app=app))
    with pytest.raises(an.AuthenticationError):
        an.fetch_transcripts(wrong, sessions_frame(fleet.sessions), progress=False)


def test_bad_arguments_are_refused_before_any_request(demo):
    _, client, sessions = demo
    for bad in (-1, 2.5, True, "600"):
        with pytest.raises(ValueError, match="sample="):
            an.fetch_transcripts(client, sessions, sample=bad)
    with pytest.raises(ValueError, match="cache="):
        an.fetch_transcripts(client, sessions, cache="")
    with pytest.raises(TypeError, match="sessions DataFrame"):
        an.fetch_transcripts(client, [1, 2])


def test_a_real_loopback_server_gives_the_same_turns(demo, loopback_server):
    app, client, sessions = demo
    base = loopback_server(app)
    real = an.AnamClient(api_key=app.state.simulator.api_key, base_url=base)
    over_http = an.fetch_transcripts(real, sessions, sample=50, progress=False)
    in_process = an.fetch_transcripts(client, sessions, sample=50, progress=False)
    pd.testing.assert_frame_equal(over_http, in_process)


def test_an_async_client_takes_the_same_path(demo):
    app, client, sessions = demo
    aclient = an.AsyncAnamClient(api_key=app.state.simulator.api_key, base_url="http://anam-simulator",
                                 transport=httpx.ASGITransport(app=app))
    from_async = an.fetch_transcripts(aclient, sessions, sample=40, progress=False)
    pd.testing.assert_frame_equal(from_async, an.fetch_transcripts(client, sessions, sample=40, progress=False))


def test_a_corrupt_or_foreign_cache_part_is_reported_and_skipped(demo, tmp_path):
    from anam_notebooks.data.store import CacheFileWarning
    from anam_notebooks.data.transcript_store import TranscriptStore

    app, client, sessions = demo
    ended = sessions[~sessions["is_active"]]
    first = an.fetch_transcripts(client, ended, sample=30, cache=tmp_path, progress=False)
    org = ended["organization_id"].dropna().iloc[0]
    store = TranscriptStore(tmp_path, base_url=client.base_url, organization_id=org)
    # Another API's part, forged to sort first (it would win), and a file that is not Parquet.
    other = TranscriptStore(tmp_path, base_url="https://elsewhere.example", organization_id=org)
    other.save(first.assign(text="forged"), dict.fromkeys(first["session_id"], "transcript"))
    other.parts()[0].rename(store.folder / "part-0-foreign.parquet")
    (store.folder / "part-1-zzz-broken.parquet").write_bytes(b"not parquet at all")
    stats = app.state.simulator.stats
    stats.clear()
    with pytest.warns(CacheFileWarning) as caught:
        again = an.fetch_transcripts(client, ended, sample=30, cache=tmp_path, progress=False)
    text = " ".join(str(w.message) for w in caught)
    assert "part-0-foreign.parquet" in text and "another API" in text
    assert "part-1-zzz-broken.parquet" in text and "could not be read" in text
    assert stats["total"] == 0
    pd.testing.assert_frame_equal(first, again)


def test_many_saves_are_merged_into_one_part(demo, tmp_path):
    from anam_notebooks.data.transcript_store import COMPACT_AFTER, TranscriptStore

    _, client, sessions = demo
    ended = sessions[~sessions["is_active"] & ~sessions["zero_data_retention"].fillna(False)]
    for n in range(COMPACT_AFTER + 1):
        an.fetch_transcripts(client, ended.iloc[n * 3:(n + 1) * 3], cache=tmp_path, progress=False)
    store = TranscriptStore(tmp_path, base_url=client.base_url,
                            organization_id=ended["organization_id"].dropna().iloc[0])
    assert len(store.parts()) == 1
    turns, outcomes = store.load()
    assert len(outcomes) == 3 * (COMPACT_AFTER + 1)
    assert set(turns["session_id"]) <= set(outcomes)
    fresh = an.fetch_transcripts(client, ended.iloc[:3 * (COMPACT_AFTER + 1)], progress=False)
    cached = an.fetch_transcripts(client, ended.iloc[:3 * (COMPACT_AFTER + 1)], cache=tmp_path, progress=False)
    assert cached.attrs["requests"] == 0
    pd.testing.assert_frame_equal(fresh, cached)
