"""sessions_frame and transcript_frame: every column and dtype, odd and hostile records."""

from __future__ import annotations

import copy
import warnings

import pandas as pd
import pytest

from anam_notebooks import sessions_frame, transcript_frame
from anam_notebooks.data.columns import SESSION_COLUMNS, TRANSCRIPT_COLUMNS
from anam_notebooks.data.fields import MalformedRecordWarning
from anam_notebooks.data.sessions import empty_sessions_frame

SEED_RECORD = {
    "id": "00000000-0000-0000-0000-000000000000",
    "personaId": None,
    "clientLabel": "anam-lab-chat",
    "startTime": "2026-04-20T09:00:00.000Z",
    "endTime": "2026-04-20T09:12:34.000Z",
    "sessionLengthMs": 754000,
    "exitStatus": "CLOSED_BY_ENGINE",
    "engineHost": "connect-eu.anam.ai/v1/webrtc/engines/anam-engine-7dddcb9ccd-db8v9",
    "engineProtocol": "https",
    "engineVersion": "v5.1.0",
    "clientMetadata": {"userAgent": "Mozilla/5.0"},
    "personaConfig": {
        "type": "ephemeral", "name": "Cara", "metadata": {"client": "js-sdk"},
        "llmConfig": {"id": "a7cf662c-2ace-4de1-a21e-ef0fbf144bb7", "modelName": "gpt-4o",
                      "secret_iv": "[REDACTED]", "encrypted_secret": "[REDACTED]"},
        "systemPrompt": "You are a helpful assistant.", "languageCode": "en",
        "zeroDataRetention": False, "ttsProvider": "ELEVENLABS",
        "avatarEngineKey": "cara_home", "avatarVersion": "cara-3", "fps": 25,
    },
    "apiKeyId": "00000000-0000-0000-0000-000000000001",
    "organizationId": "o42dp8vwWJeMNFFhH6CUY",
    "createdAt": "2026-04-20T09:00:00.000Z",
    "updatedAt": "2026-04-20T09:12:34.000Z",
}


def record(**changes):
    out = copy.deepcopy(SEED_RECORD)
    for key, value in changes.items():
        if value is KeyError:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_seed_record_fills_every_column_with_its_contract_dtype():
    df = sessions_frame([SEED_RECORD])
    assert list(df.columns) == list(SESSION_COLUMNS)
    assert df.index.name == "id" and df.index.dtype == pd.StringDtype("pyarrow")
    row = df.loc["00000000-0000-0000-0000-000000000000"]
    assert pd.isna(row.persona_id)
    assert row.client_label == "anam-lab-chat"
    assert row.api_key_id == "00000000-0000-0000-0000-000000000001"
    assert row.organization_id == "o42dp8vwWJeMNFFhH6CUY"
    assert row.start_time == utc("2026-04-20T09:00:00")
    assert row.end_time == utc("2026-04-20T09:12:34")
    assert row.created_at == utc("2026-04-20T09:00:00")
    assert row.updated_at == utc("2026-04-20T09:12:34")
    assert row.session_length_ms == 754000
    assert row.duration == pd.Timedelta(minutes=12, seconds=34)
    assert row.exit_status == "CLOSED_BY_ENGINE"
    assert not df["is_active"].iloc[0]
    assert row.engine_host == SEED_RECORD["engineHost"]
    assert (row.engine_protocol, row.engine_version) == ("https", "v5.1.0")
    assert (row.engine_region, row.engine_replicaset, row.engine_pod) == (
        "eu", "anam-engine-7dddcb9ccd", "anam-engine-7dddcb9ccd-db8v9")
    assert (row.persona_name, row.persona_type, row.llm_model) == ("Cara", "ephemeral", "gpt-4o")
    assert (row.tts_provider, row.avatar_version, row.avatar_key) == ("ELEVENLABS", "cara-3", "cara_home")
    assert row.language_code == "en"
    assert df["zero_data_retention"].iloc[0] is not pd.NA and not df["zero_data_retention"].iloc[0]
    assert row.user_agent == "Mozilla/5.0"


def test_dtypes_match_the_contract():
    df = sessions_frame([SEED_RECORD, record(id="b", endTime=None, sessionLengthMs=None, exitStatus=None)])
    for column, dtype in SESSION_COLUMNS.items():
        if dtype == "category":
            assert isinstance(df[column].dtype, pd.CategoricalDtype), column
        else:
            assert df[column].dtype == dtype, column
    assert str(df.start_time.dtype) in {"datetime64[us, UTC]", "datetime64[ns, UTC]"}
    assert df.session_length_ms.dtype == "Int64"
    assert df.duration.dtype.kind == "m"
    assert df.is_active.dtype == bool
    assert df.zero_data_retention.dtype == "boolean"


def test_empty_input_gives_every_column_and_dtype():
    full = sessions_frame([SEED_RECORD])
    for empty in (sessions_frame([]), sessions_frame(iter(())), empty_sessions_frame()):
        assert len(empty) == 0
        assert list(empty.columns) == list(full.columns)
        assert empty.index.name == "id"
        for column in full.columns:
            assert type(empty[column].dtype) is type(full[column].dtype), column
            if not isinstance(full[column].dtype, pd.CategoricalDtype):
                assert empty[column].dtype == full[column].dtype, column


@pytest.mark.parametrize("text, expected", [
    ("2026-04-20T09:00:00Z", "2026-04-20T09:00:00"),
    ("2026-04-20T09:00:00.000Z", "2026-04-20T09:00:00"),
    ("2026-04-20T09:00:00.123Z", "2026-04-20T09:00:00.123"),
    ("2026-04-20T09:00:00.123456Z", "2026-04-20T09:00:00.123456"),
    ("2026-04-20T09:00:00+00:00", "2026-04-20T09:00:00"),
    ("2026-04-20T11:00:00+02:00", "2026-04-20T09:00:00"),
    ("2026-04-20T11:00:00.5+02:00", "2026-04-20T09:00:00.5"),
    ("2026-04-20T04:00:00-05:00", "2026-04-20T09:00:00"),
    ("2026-04-20T09:00:00.123456789Z", "2026-04-20T09:00:00.123456"),
    ("2026-04-20T09:00:00", "2026-04-20T09:00:00"),
])
def test_timestamps_in_any_offset_and_precision_become_utc(text, expected):
    df = sessions_frame([record(startTime=text)])
    assert df.start_time.iloc[0] == utc(expected)
    assert str(df.start_time.dtype).endswith(", UTC]")


def test_mixed_timestamp_forms_in_one_frame():
    texts = ["2026-04-20T09:00:00Z", "2026-04-20T11:00:00.250+02:00", "2026-04-20T09:00:00.123456+00:00"]
    df = sessions_frame([record(id=str(i), startTime=t) for i, t in enumerate(texts)])
    assert list(df.start_time) == [utc("2026-04-20T09:00:00"), utc("2026-04-20T09:00:00.25"),
                                   utc("2026-04-20T09:00:00.123456")]


def test_unparseable_timestamp_becomes_nat_with_a_warning_naming_id_and_field():
    with pytest.warns(MalformedRecordWarning, match=r"startTime.*'bad-time'"):
        df = sessions_frame([record(id="bad-time", startTime="yesterday-ish"), record(id="ok")])
    assert pd.isna(df.loc["bad-time", "start_time"])
    assert df.loc["ok", "start_time"] == utc("2026-04-20T09:00:00")


def test_unknown_exit_statuses_are_kept_as_new_categories():
    statuses = ["NORMAL_EXIT", "ERROR", "SOMETHING_NEW_2027", "weird lower case", None]
    df = sessions_frame([record(id=str(i), exitStatus=s) for i, s in enumerate(statuses)])
    assert list(df.exit_status.astype(object).where(df.exit_status.notna(), None)) == statuses
    assert set(df.exit_status.cat.categories) == set(statuses[:-1])


def test_active_session_has_no_end_and_duration_falls_back_to_end_minus_start():
    active = record(id="active", endTime=None, sessionLengthMs=None, exitStatus=None)
    no_length = record(id="no-length", sessionLengthMs=KeyError)
    df = sessions_frame([active, no_length])
    assert df.loc["active", "is_active"] and not df.loc["no-length", "is_active"]
    assert pd.isna(df.loc["active", "duration"]) and pd.isna(df.loc["active", "end_time"])
    assert pd.isna(df.loc["no-length", "session_length_ms"])
    assert df.loc["no-length", "duration"] == pd.Timedelta(minutes=12, seconds=34)


def test_missing_fields_become_nulls_and_extra_fields_are_ignored():
    bare = {"id": "bare"}
    extra = record(id="extra", tags=["pilot", "β"], somethingNew={"nested": [1, 2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = sessions_frame([bare, extra])
    assert "tags" not in df.columns and "somethingNew" not in df.columns
    row = df.loc["bare"]
    assert pd.isna(row.start_time) and pd.isna(row.exit_status) and pd.isna(row.engine_pod)
    assert pd.isna(row.persona_name) and pd.isna(row.zero_data_retention)
    assert row.is_active  # no end time
    assert row.persona_type == "ephemeral"  # inferred: personaId missing
    assert df.loc["extra", "persona_name"] == "Cara"


def test_persona_type_inferred_from_persona_id_when_config_does_not_say():
    stateful = record(id="s", personaId="11111111-1111-1111-1111-111111111111", personaConfig={"name": "X"})
    ephemeral = record(id="e", personaConfig={})
    df = sessions_frame([stateful, ephemeral])
    assert df.loc["s", "persona_type"] == "stateful" and df.loc["e", "persona_type"] == "ephemeral"


def test_avatar_model_and_alternative_llm_key_are_read():
    config = {"avatarModel": "mia-4", "llmConfig": {"model": "claude"}}
    df = sessions_frame([record(id="alt", personaConfig=config)])
    assert df.loc["alt", "avatar_version"] == "mia-4" and df.loc["alt", "llm_model"] == "claude"


@pytest.mark.parametrize("field, value, column", [
    ("sessionLengthMs", "754000", "session_length_ms"),
    ("sessionLengthMs", True, "session_length_ms"),
    ("sessionLengthMs", 1.5, "session_length_ms"),
    ("sessionLengthMs", 10**30, "session_length_ms"),
    ("exitStatus", 3, "exit_status"),
    ("clientLabel", ["a"], "client_label"),
    ("engineHost", {"host": "x"}, "engine_host"),
    ("startTime", 1713600000, "start_time"),
    ("personaId", 42, "persona_id"),
])
def test_wrong_type_in_a_field_is_null_with_a_warning_and_the_rest_survives(field, value, column):
    with pytest.warns(MalformedRecordWarning) as caught:
        df = sessions_frame([record(id="odd", **{field: value}), record(id="fine")])
    message = " ".join(str(w.message) for w in caught)
    assert field in message and "'odd'" in message
    assert pd.isna(df.loc["odd", column])
    assert df.loc["odd", "client_label" if column != "client_label" else "exit_status"] is not None
    assert len(df) == 2


def test_non_dict_persona_config_is_reported_and_read_as_empty():
    with pytest.warns(MalformedRecordWarning, match=r"personaConfig.*'odd'"):
        df = sessions_frame([record(id="odd", personaConfig=["not", "a", "dict"])])
    assert pd.isna(df.loc["odd", "persona_name"]) and pd.isna(df.loc["odd", "llm_model"])
    assert df.loc["odd", "exit_status"] == "CLOSED_BY_ENGINE"


def test_non_dict_llm_config_and_client_metadata_are_reported():
    config = dict(SEED_RECORD["personaConfig"], llmConfig="gpt-4o")
    with pytest.warns(MalformedRecordWarning) as caught:
        df = sessions_frame([record(id="odd", personaConfig=config, clientMetadata="Mozilla")])
    message = " ".join(str(w.message) for w in caught)
    assert "llmConfig" in message and "clientMetadata" in message
    assert df.loc["odd", "persona_name"] == "Cara" and pd.isna(df.loc["odd", "user_agent"])


def test_records_without_id_or_not_objects_are_skipped_with_a_warning():
    items = [record(id=KeyError), record(id=""), record(id=7), "a string", None, record(id="kept")]
    with pytest.warns(MalformedRecordWarning) as caught:
        df = sessions_frame(items)
    assert list(df.index) == ["kept"]
    text = " ".join(str(w.message) for w in caught)
    assert "id is missing" in text and "not an object" in text


def test_a_single_record_instead_of_a_list_is_a_clear_error():
    with pytest.raises(TypeError, match="wrap one record in a list"):
        sessions_frame(SEED_RECORD)


def test_duplicate_ids_keep_the_most_updated_record():
    old = record(id="dup", endTime=None, exitStatus=None, sessionLengthMs=None, updatedAt="2026-04-20T09:05:00Z")
    new = record(id="dup", updatedAt="2026-04-20T09:12:34Z")
    other = record(id="other")
    for order in ([old, other, new], [new, other, old]):
        df = sessions_frame(order)
        assert df.index.is_unique and len(df) == 2
        assert df.loc["dup", "exit_status"] == "CLOSED_BY_ENGINE"
    # equal update times: the later record wins
    first, second = record(id="tie", clientLabel="first"), record(id="tie", clientLabel="second")
    assert sessions_frame([first, second]).loc["tie", "client_label"] == "second"


HOSTILE = [
    "<script>alert('x')</script>",
    "line\nbreak\ttab\x00nul\x1bescape",
    "x" * 100_000,
    "ünïcödé ✓ — 漢字 🙂 \u202eRTL",
    "   padded   ",
    "",
    "NaN",
    "None",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_are_kept_verbatim(text):
    config = dict(SEED_RECORD["personaConfig"], name=text, llmConfig={"modelName": text})
    df = sessions_frame([record(id=text or "empty-label", clientLabel=text, exitStatus=text,
                                engineHost=text, engineVersion=text, personaConfig=config)])
    row = df.iloc[0]
    assert df.index[0] == (text or "empty-label")
    for column in ("client_label", "exit_status", "engine_host", "engine_version", "persona_name", "llm_model"):
        assert row[column] == text, column


def test_lone_surrogates_are_escaped_not_fatal():
    with pytest.warns(MalformedRecordWarning, match="unicode"):
        df = sessions_frame([record(id="s", clientLabel="bad \ud800 text")])
    assert df.loc["s", "client_label"] == "bad \\ud800 text"


def test_generator_input_and_more_than_one_chunk(monkeypatch):
    import anam_notebooks.data.sessions as frames
    monkeypatch.setattr(frames, "_CHUNK", 7)
    statuses = ["A", "B", "C", "D"]
    records = (record(id=f"r{i}", exitStatus=statuses[i % 4], engineVersion=f"v{i % 3}") for i in range(30))
    df = sessions_frame(records)
    assert list(df.index) == [f"r{i}" for i in range(30)]
    assert list(df.exit_status) == [statuses[i % 4] for i in range(30)]
    assert list(df.engine_version.cat.categories) == ["v0", "v1", "v2"]


def test_fleet_records_build_a_frame_without_warnings(fleet):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MalformedRecordWarning)
        df = sessions_frame(fleet.sessions)
    assert len(df) == len(fleet.sessions) and df.index.is_unique
    assert set(df.engine_region.dropna().unique()) <= {"eu", "us", "ap"}
    assert df.engine_pod.notna().mean() > 0.95
    assert df.is_active.sum() == sum(r.get("endTime") is None for r in fleet.sessions)
    assert df.memory_usage(deep=True).sum() / len(df) < 700


# -- transcripts -------------------------------------------------------------------------------

TRANSCRIPT = {
    "sessionId": "00000000-0000-0000-0000-000000000000",
    "personaName": "Cara",
    "startTime": "2026-04-20T09:00:00.000Z",
    "endTime": "2026-04-20T09:12:34.000Z",
    "durationMs": 754000,
    "totalMessages": 3,
    "transcriptsEnabled": True,
    "messages": [
        {"role": "persona", "message": "Hi, I'm Cara.", "timestamp": "2026-04-20T09:00:01.500Z",
         "speakingDurationSeconds": 1.25, "wasInterrupted": False},
        {"role": "user", "message": "<b>hello</b>", "timestamp": "2026-04-20T11:00:04+02:00",
         "speakingDurationSeconds": 0.8},
        {"role": "persona", "message": "How can I help?", "timestamp": "2026-04-20T09:00:06Z",
         "speakingDurationSeconds": None, "wasInterrupted": True},
    ],
}


def test_transcript_frame_one_row_per_message_with_typed_columns():
    df = transcript_frame(TRANSCRIPT)
    assert list(df.columns) == list(TRANSCRIPT_COLUMNS) == ["role", "text", "timestamp", "offset",
                                                         "speaking_duration", "interrupted"]
    assert isinstance(df.role.dtype, pd.CategoricalDtype)
    assert df.text.dtype == pd.StringDtype("pyarrow")
    assert str(df.timestamp.dtype).endswith(", UTC]")
    assert df.offset.dtype.kind == "m" and df.speaking_duration.dtype.kind == "m"
    assert df.interrupted.dtype == "boolean"
    assert list(df.role) == ["persona", "user", "persona"]
    assert df.text.iloc[1] == "<b>hello</b>"
    assert list(df.offset) == [pd.Timedelta(seconds=1.5), pd.Timedelta(seconds=4), pd.Timedelta(seconds=6)]
    assert df.speaking_duration.iloc[0] == pd.Timedelta(seconds=1.25) and pd.isna(df.speaking_duration.iloc[2])
    assert df.interrupted.iloc[0] is not pd.NA and not df.interrupted.iloc[0]
    assert pd.isna(df.interrupted.iloc[1]) and bool(df.interrupted.iloc[2])
    assert df.attrs["session_id"] == TRANSCRIPT["sessionId"]


def test_transcript_offset_uses_the_given_session_start():
    df = transcript_frame(TRANSCRIPT, session_start="2026-04-20T09:00:01Z")
    assert df.offset.iloc[0] == pd.Timedelta(seconds=0.5)


def test_transcript_without_start_has_no_offsets():
    df = transcript_frame(dict(TRANSCRIPT, startTime=None))
    assert df.offset.isna().all() and df.timestamp.notna().all()


def test_empty_transcript_is_a_typed_empty_frame():
    full = transcript_frame(TRANSCRIPT)
    for transcript in ({}, dict(TRANSCRIPT, messages=[])):
        empty = transcript_frame(transcript)
        assert len(empty) == 0 and list(empty.columns) == list(full.columns)
        for column in full.columns:
            assert type(empty[column].dtype) is type(full[column].dtype), column


def test_odd_messages_are_reported_and_skipped():
    messages = [TRANSCRIPT["messages"][0], "not a message", {"role": "user", "message": 5}]
    with pytest.warns(MalformedRecordWarning):
        df = transcript_frame(dict(TRANSCRIPT, messages=messages))
    assert len(df) == 2 and pd.isna(df.text.iloc[1])


def test_transcript_frame_rejects_a_non_object():
    with pytest.raises(TypeError, match="transcript"):
        transcript_frame(["not", "a", "transcript"])


def test_fleet_transcript_builds(fleet):
    sid = next(r["id"] for r in fleet.sessions if r.get("endTime") and fleet.transcripts.get(r["id"]))
    df = transcript_frame(fleet.transcripts[sid])
    assert len(df) > 0 and df.timestamp.is_monotonic_increasing
    assert set(df.role.dropna()) <= {"user", "persona"}


def test_concat_sessions_unions_categories_and_keeps_dtypes():
    from anam_notebooks.data.sessions import concat_sessions
    left = sessions_frame([record(id="l", exitStatus="ERROR")])
    right = sessions_frame([{"id": "r", "exitStatus": "NEW_STATUS"}])  # mostly null columns
    both = concat_sessions([left, sessions_frame([]), right])
    assert list(both.index) == ["l", "r"] and list(both.columns) == list(left.columns)
    assert list(both.exit_status) == ["ERROR", "NEW_STATUS"]
    for column in left.columns:
        assert type(both[column].dtype) is type(left[column].dtype), column
    assert both.loc["l", "persona_name"] == "Cara" and pd.isna(both.loc["r", "persona_name"])
