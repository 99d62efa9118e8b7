"""A transcript (from `client.get_transcript`) → one row per message."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .columns import STRING, TIMEDELTA, UTC_TIME
from .fields import MalformedRecordWarning, Problems, bool_array, categorical, string_array, timestamp_array, to_utc
from .timespan import TimeBound, parse_time_bound


def transcript_frame(transcript: Mapping[str, Any], *, session_start: TimeBound = None) -> pd.DataFrame:
    """A transcript (from `client.get_transcript`) → one row per message.

    Columns: role (category), text (string), timestamp (UTC), offset from the session start,
    speaking_duration (timedelta, from speakingDurationSeconds), interrupted (nullable boolean:
    NA for user messages and when not reported). The start is `session_start` when given, else
    the transcript's own startTime. `frame.attrs` carries session_id and persona_name.
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
    role = string_array([m.get("role") for m in rows], "role", keys, problems)
    text = string_array([m.get("message") for m in rows], "message", keys, problems)
    stamps = timestamp_array([m.get("timestamp") for m in rows], "timestamp", keys, problems)
    speaking = _speaking([m.get("speakingDurationSeconds") for m in rows], keys, problems)
    interrupted = bool_array([m.get("wasInterrupted") if m.get("role") != "user" else None for m in rows],
                            "wasInterrupted", keys, problems)
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


def _speaking(values: list[Any], keys: list[str], problems: Problems) -> np.ndarray:
    micros = np.full(len(values), np.timedelta64("NaT", "us"), dtype=TIMEDELTA)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) > 1e12:
            problems.add("speakingDurationSeconds", keys[i])
            continue
        micros[i] = np.timedelta64(round(value * 1_000_000), "us")
    return micros
