"""Time helpers of the simulator: span parsing and ISO-8601 strings in the API's mixed styles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# How a record writes its timestamps: millisecond "Z" (the seed's style), whole seconds "Z",
# microseconds "+00:00", and milliseconds in a "+02:00" local offset (the same instant).
STYLES = ("ms_z", "s_z", "us_utc", "ms_plus2")
STYLE_WEIGHTS = (0.62, 0.14, 0.14, 0.10)


def parse_span(span: timedelta | str) -> timedelta:
    """A positive duration from a timedelta or a string such as "90m", "24h", "7d"."""
    if isinstance(span, timedelta):
        value = span
    elif isinstance(span, str) and (match := _SPAN.match(span)):
        value = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    else:
        raise ValueError(
            f"span={span!r} is not a duration: give a timedelta or a string like '90m', '24h', '7d'"
        )
    if value <= timedelta(0):
        raise ValueError(f"span={span!r} must be positive, e.g. '24h' or '7d'")
    return value


def utc_end(end: datetime | None) -> datetime:
    """The fleet's end instant: now (UTC) when None; naive datetimes are taken as UTC."""
    if end is None:
        return datetime.now(UTC)
    if not isinstance(end, datetime):
        raise ValueError(f"end={end!r} is not a datetime: give a datetime or None for now")
    if end.tzinfo is None:
        return end.replace(tzinfo=UTC)
    return end.astimezone(UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch."""
    return round(moment.timestamp() * 1000)


def from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_many(ms: np.ndarray, styles: np.ndarray, micros: np.ndarray) -> list[str]:
    """ISO strings for epoch-millisecond instants, each in its record's style.

    `micros` (0..999) adds sub-millisecond digits for the microsecond style so those strings
    really carry six digits of precision.
    """
    ms = np.asarray(ms, dtype=np.int64)
    utc = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    plus2 = np.datetime_as_string((ms + 7_200_000).astype("datetime64[ms]"), unit="ms")
    out: list[str] = []
    for text, local, style, extra in zip(utc.tolist(), plus2.tolist(), styles.tolist(), micros.tolist()):
        if style == 0:
            out.append(text + "Z")
        elif style == 1:
            out.append(text[:-4] + "Z")
        elif style == 2:
            out.append(f"{text}{extra:03d}+00:00")
        else:
            out.append(local + "+02:00")
    return out


def parse_iso(text: str) -> datetime:
    """Parse any of the API's ISO-8601 forms into an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)
