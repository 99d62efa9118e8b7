"""Transcripts → frames: `transcript_frame` (one transcript, one row per message) and
`turns_frame` (many transcripts, one row per message with the persona's response gap).

The **response gap** of a persona message that answers a user message (the message right
before it in the transcript is the user's) is
`persona.timestamp − (user.timestamp + user.speakingDurationSeconds)`, in seconds: how long the
user waited after they stopped speaking. Pairs missing either time or the user's duration get
no gap; a negative gap (the persona started before the user finished: overlap or barge-in) is
kept as it is, and counted apart by `analysis.response_latency`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .columns import CATEGORY, STRING, TIMEDELTA, UTC_TIME
from .fields import MalformedRecordWarning, Problems, bool_array, categorical, string_array, timestamp_array, to_utc
from .timespan import TimeBound, parse_time_bound


def transcript_frame(transcript: Mapping[str, Any], *, session_start: TimeBound = None) -> pd.DataFrame:
    """A transcript (from `client.get_transcript`) → one row per message.

    Columns: role (category), text (string), timestamp (UTC), offset from the session start,
    speaking_duration (timedelta, from speakingDurationSeconds), interrupted (nullable boolean:
    NA for user messages and when not reported). The start is `session_start` when given, else
    the transcript's own startTime. `frame.attrs` carries session_id and persona_name.

    Parameters
    ----------
    transcript : dict
        The transcript object as the API sends it.
    session_start : datetime or str, optional
        Where offsets count from; the transcript's ``startTime`` when None.

    Returns
    -------
    pandas.DataFrame
        One row per message, indexed by its position. Malformed messages and fields become
        nulls with a `MalformedRecordWarning`; many transcripts at once go to `turns_frame`.

    Raises
    ------
    TypeError
        `transcript` is not a mapping.
    ValueError
        `session_start` is not a readable time.
    """
    if not isinstance(transcript, Mapping):
        raise TypeError(f"transcript_frame expects the transcript object (a dict), got {type(transcript).__name__}")
    session_id = transcript.get("sessionId")
    label = session_id if isinstance(session_id, str) else "<transcript>"
    messages = transcript.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        warnings.warn(f"transcript {label!r}: messages is a {type(messages).__name__}, not a list; "
                      "no messages read", MalformedRecordWarning, stacklevel=2)
        messages = []
    problems = Problems()
    rows = []
    for number, message in enumerate(messages):
        if isinstance(message, dict):
            rows.append(message)
        else:
            problems.add("message", f"{label} #{number}", "is not an object", "skipped")
    keys = [f"{label} #{n}" for n in range(len(rows))]
    role, text, stamps, speaking, interrupted = _message_columns(rows, keys, problems)
    problems.emit("transcript_frame")

    if session_start is not None:
        start = parse_time_bound(session_start, name="session_start")
    else:
        start = to_utc([transcript.get("startTime") if isinstance(transcript.get("startTime"), str)
                         else None])[0]
    timestamp = pd.Series(stamps.to_pandas(), dtype=UTC_TIME)
    frame = pd.DataFrame({
        "role": categorical(pa.chunked_array([role])),
        "text": pd.array(text.to_pandas(types_mapper={pa.string(): STRING}.get), dtype=STRING),
        "timestamp": timestamp.array,
        "offset": (timestamp - start).astype(TIMEDELTA).array if not pd.isna(start)
        else pd.array([pd.NaT] * len(rows), dtype=TIMEDELTA),
        "speaking_duration": speaking,
        "interrupted": pd.array(interrupted.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get),
                                dtype=pd.BooleanDtype()),
    }, index=pd.RangeIndex(len(rows), name="message"))
    frame.attrs.update(session_id=session_id, persona_name=transcript.get("personaName"))
    return frame


def _message_columns(rows: list[dict[str, Any]], keys: list[str], problems: Problems
                     ) -> tuple[pa.Array, pa.Array, pa.Array, np.ndarray, pa.Array]:
    """Each message field as a column: role, text, start time, speaking time, interrupted
    (persona messages only); wrong-typed values become nulls, reported through `problems`."""
    role = string_array([m.get("role") for m in rows], "role", keys, problems)
    text = string_array([m.get("message") for m in rows], "message", keys, problems)
    stamps = timestamp_array([m.get("timestamp") for m in rows], "timestamp", keys, problems)
    speaking = _speaking([m.get("speakingDurationSeconds") for m in rows], keys, problems)
    interrupted = bool_array([m.get("wasInterrupted") if m.get("role") != "user" else None for m in rows],
                             "wasInterrupted", keys, problems)
    return role, text, stamps, speaking, interrupted


def _speaking(values: list[Any], keys: list[str], problems: Problems) -> np.ndarray:
    micros = np.full(len(values), np.timedelta64("NaT", "us"), dtype=TIMEDELTA)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) > 1e12:
            problems.add("speakingDurationSeconds", keys[i])
            continue
        if value < 0:
            problems.add("speakingDurationSeconds", keys[i], "is negative")
            continue
        micros[i] = np.timedelta64(round(value * 1_000_000), "us")
    return micros


TURN_COLUMNS: dict[str, Any] = {
    "session_id": STRING,
    "turn_index": np.dtype("int64"),
    "role": CATEGORY,
    "text": STRING,
    "timestamp": UTC_TIME,
    "speaking_duration": TIMEDELTA,
    "interrupted": pd.BooleanDtype(),
    "response_gap": np.dtype("float64"),
}


def turns_frame(transcripts: Iterable[Mapping[str, Any]], session_ids: Sequence[Any] | None = None
                ) -> pd.DataFrame:
    """Many transcripts → one row per message, in transcript order, with `response_gap`.

    Parameters
    ----------
    transcripts
        Transcript objects as `client.get_transcript` returns them.
    session_ids
        The session each transcript belongs to (what was asked for); when None, each
        transcript's own `sessionId` is used.

    Returns
    -------
    pandas.DataFrame
        Columns `TURN_COLUMNS`: session_id, turn_index (the message's position in its
        transcript), role, text (raw, possibly hostile: escape before display), timestamp
        (UTC, whatever offset it was written in), speaking_duration, interrupted (persona
        messages only) and response_gap (seconds; only on persona messages that answer a user
        message with both times known; negative for overlaps).

    Raises
    ------
    ValueError
        When `session_ids` does not hold one id per transcript.

    Malformed messages or fields become null with one `MalformedRecordWarning` per kind.
    """
    items = list(transcripts)
    if session_ids is not None and len(session_ids) != len(items):
        raise ValueError(f"session_ids holds {len(session_ids)} ids for {len(items)} transcripts: "
                         "give one id per transcript, or None to use each transcript's sessionId")
    problems = Problems()
    sids: list[Any] = []
    index: list[int] = []
    rows: list[dict[str, Any]] = []
    for n, transcript in enumerate(items):
        sid = session_ids[n] if session_ids is not None else (
            transcript.get("sessionId") if isinstance(transcript, Mapping) else None)
        label = sid if isinstance(sid, str) else f"<transcript {n}>"
        if not isinstance(transcript, Mapping):
            problems.add("transcript", label, "is not an object", "skipped")
            continue
        messages = transcript.get("messages")
        if messages is None:
            continue
        if not isinstance(messages, list):
            problems.add("messages", label, "is not a list", "no messages read")
            continue
        for number, message in enumerate(messages):
            if isinstance(message, dict):
                sids.append(sid if isinstance(sid, str) else None)
                index.append(number)
                rows.append(message)
            else:
                problems.add("message", f"{label} #{number}", "is not an object", "skipped")
    keys = [f"{s} #{i}" for s, i in zip(sids, index)]
    session = string_array(sids, "sessionId", keys, problems)
    role, text, stamps, speaking, interrupted = _message_columns(rows, keys, problems)
    problems.emit("turns_frame")

    timestamp = pd.Series(stamps.to_pandas(), dtype=UTC_TIME)
    turn_index = np.asarray(index, dtype=np.int64)
    roles = pd.Series(role.to_pandas(), dtype=object)
    frame = pd.DataFrame({
        "session_id": pd.array(session.to_pandas(types_mapper={pa.string(): STRING}.get), dtype=STRING),
        "turn_index": turn_index,
        "role": categorical(pa.chunked_array([role])),
        "text": pd.array(text.to_pandas(types_mapper={pa.string(): STRING}.get), dtype=STRING),
        "timestamp": timestamp.array,
        "speaking_duration": speaking,
        "interrupted": pd.array(interrupted.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get),
                                dtype=pd.BooleanDtype()),
    }, index=pd.RangeIndex(len(rows), name="turn"))
    frame["response_gap"] = response_gaps(frame["session_id"], turn_index, roles, timestamp, speaking)
    return frame


def response_gaps(session_id: pd.Series, turn_index: np.ndarray, role: pd.Series, timestamp: pd.Series,
                  speaking: np.ndarray) -> np.ndarray:
    """Seconds from the end of each user message to the start of the persona message right
    after it (same session, consecutive turn numbers); NaN everywhere else."""
    n = len(turn_index)
    gaps = np.full(n, np.nan)
    if n < 2:
        return gaps
    kind = role.map(lambda r: r.strip().lower() if isinstance(r, str) else None).to_numpy(dtype=object)
    same = (session_id.iloc[1:].to_numpy(dtype=object, na_value=None)
            == session_id.iloc[:-1].to_numpy(dtype=object, na_value=None))
    answers = same & (turn_index[1:] == turn_index[:-1] + 1) & (kind[1:] == "persona") & (kind[:-1] == "user")
    micros = timestamp.to_numpy(dtype="datetime64[us]").astype(np.int64)
    known = ~timestamp.isna().to_numpy()
    spoken = speaking.astype(np.int64)
    spoken_known = ~np.isnat(speaking)
    ok = answers & known[1:] & known[:-1] & spoken_known[:-1]
    after = np.flatnonzero(ok) + 1
    gaps[after] = (micros[after] - micros[after - 1] - spoken[after - 1]) / 1e6
    return gaps


def empty_turns() -> pd.DataFrame:
    """A typed turns frame with no rows."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in TURN_COLUMNS.items()},
                        index=pd.RangeIndex(0, name="turn"))


def concat_turns(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Turns frames stacked, dtypes kept (roles re-encoded with sorted categories)."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_turns()
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat([f.astype({"role": object}) for f in parts], ignore_index=True)
    roles = sorted({r for r in frame["role"].dropna().unique()})
    frame["role"] = pd.Categorical(frame["role"], categories=pd.Index(roles, dtype=object).astype(str))
    return frame.astype({name: dtype for name, dtype in TURN_COLUMNS.items() if name != "role"}
                        ).rename_axis("turn")
