"""What a session leaves behind: its transcript (unless zero data retention) and a recording.

Transcripts are built on first access from the session record and the fleet seed, so a
20,000-session fleet costs nothing until someone reads one, and reads are deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from .latency import INTERRUPTED_SHARE, LatencyRegression, answer_gap, extra_delay, session_pace
from .timefmt import parse_iso

RECORDING_HOST = "anam-session-recordings.s3.eu-west-1.amazonaws.com"
RECORDING_SHARE = 0.85  # ended sessions whose recording was kept
MAX_MESSAGES = 60
PLUS_TWO = timezone(timedelta(hours=2))

USER_LINES = ("Hi, can you hear me?", "What are your opening hours?", "I'd like to change my plan.",
              "Can you repeat that, please?", "How much does the premium tier cost?",
              "Thanks, that's all.", "Wait — sorry, go on.", "Is there a discount for students?",
              "My invoice shows the wrong address.", "Ça marche, merci ! 👍",
              "<img src=x onerror=alert(1)> is what I typed", "Okay.")
PERSONA_LINES = ("Hello! How can I help you today?", "Of course. Let me check that for you.",
                 "We're open from nine to six, Monday to Friday.",
                 "The premium tier is 29 euros a month.", "Sure — I said the update is live.",
                 "I've noted the new address on your account.", "Is there anything else?",
                 "Students get twenty per cent off with a valid ID.", "Goodbye, and have a nice day!")


def keeps_transcript(record: Mapping) -> bool:
    """Sessions run with zeroDataRetention keep no transcript."""
    config = record.get("personaConfig")
    return not (isinstance(config, Mapping) and config.get("zeroDataRetention") is True)


def _stamp(moment: datetime, zone: tzinfo = UTC) -> str:
    return moment.astimezone(zone).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_transcript(record: Mapping, seed: int,
                     regressions: tuple[LatencyRegression, ...] = ()) -> dict:
    """A plausible conversation inside the session's time range, deterministic per (seed, id).

    Turns alternate (persona first unless skipGreeting): the persona answers a gap after the
    user stops (see `latency`), the user replies a pause after the persona stops, or talks
    over it (`wasInterrupted`, the persona's turn cut short). A few transcripts write their
    timestamps in +02:00 instead of Z, as real payloads mix offsets.
    """
    rnd = random.Random(f"{seed}:{record['id']}")
    try:
        start = parse_iso(record["startTime"])
        end = parse_iso(record["endTime"]) if record.get("endTime") else None
        horizon = end or max(start, parse_iso(record.get("updatedAt") or record["startTime"]))
    except (KeyError, TypeError, ValueError):  # a hand-made record with odd times: no messages
        start = horizon = datetime.now(UTC)
    raw_config = record.get("personaConfig")
    config: Mapping[str, Any] = raw_config if isinstance(raw_config, Mapping) else {}
    persona = not config.get("skipGreeting", False)
    pace = session_pace(rnd)
    extra = extra_delay(regressions, record, start)
    zone = PLUS_TWO if rnd.random() < 0.1 else UTC
    seconds = (horizon - start).total_seconds()
    t = rnd.uniform(0.5, 2.0)
    messages: list[dict] = []
    while len(messages) < MAX_MESSAGES and t < seconds - 0.2:
        spoken = min(rnd.uniform(1.5, 9.0) if persona else rnd.uniform(0.8, 7.0), max(seconds - t, 0.1))
        message = {
            "role": "persona" if persona else "user",
            "message": rnd.choice(PERSONA_LINES if persona else USER_LINES),
            "timestamp": None if rnd.random() < 0.01 else _stamp(start + timedelta(seconds=t), zone),
            "speakingDurationSeconds": round(spoken, 2),
        }
        if persona:
            interrupted = rnd.random() < INTERRUPTED_SHARE
            message["wasInterrupted"] = interrupted
            if interrupted:  # the user starts talking before the persona is done; it stops
                spoken *= rnd.uniform(0.3, 0.8)
                message["speakingDurationSeconds"] = round(spoken, 2)
                t += max(spoken - rnd.uniform(0.1, 0.4), 0.05)
            else:
                t += spoken + rnd.uniform(0.4, 4.0)
        else:
            t += spoken + answer_gap(rnd, pace, extra)
        messages.append(message)
        persona = not persona
    return {
        "sessionId": record["id"],
        "personaName": str(config.get("name", "")),
        "startTime": record.get("startTime"),
        "endTime": record.get("endTime"),
        "durationMs": record.get("sessionLengthMs"),
        "totalMessages": len(messages),
        "transcriptsEnabled": True,
        "messages": messages,
    }


class Transcripts(Mapping):
    """Transcript per session id, present only for sessions that keep one."""

    def __init__(self, by_id: Mapping[str, dict], seed: int,
                 regressions: tuple[LatencyRegression, ...] = ()) -> None:
        self._by_id = by_id
        self._seed = seed
        self.regressions = tuple(regressions)
        self._cache: dict[str, dict] = {}

    def __getitem__(self, session_id: str) -> dict:
        if session_id in self._cache:
            return self._cache[session_id]
        record = self._by_id[session_id]
        if not keeps_transcript(record):
            raise KeyError(session_id)
        transcript = self._cache[session_id] = build_transcript(record, self._seed, self.regressions)
        return transcript

    def __contains__(self, session_id: object) -> bool:
        record = self._by_id.get(session_id) if isinstance(session_id, str) else None
        return record is not None and keeps_transcript(record)

    def __iter__(self) -> Iterator[str]:
        return (sid for sid, record in self._by_id.items() if keeps_transcript(record))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def has_recording(record: Mapping) -> bool:
    """Ended sessions keep a recording, except zero-retention ones and a stable share of others."""
    if not record.get("endTime") or not keeps_transcript(record):
        return False
    return zlib.crc32(str(record["id"]).encode()) % 1000 < RECORDING_SHARE * 1000


def recording_url(record: Mapping, now: datetime | None = None) -> str:
    """A presigned-style S3 URL valid for an hour from `now`."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    key = f"sessions/{record['id']}/recording.mp4"
    credential = f"ASIADEMOSIMULATOR000%2F{now:%Y%m%d}%2Feu-west-1%2Fs3%2Faws4_request"
    signature = hmac.new(b"demo-signing-key", f"{key}{amz_date}".encode(), hashlib.sha256).hexdigest()
    return (f"https://{RECORDING_HOST}/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={credential}&X-Amz-Date={amz_date}&X-Amz-Expires=3600"
            f"&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}")
