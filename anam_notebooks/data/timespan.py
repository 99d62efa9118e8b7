"""Read the `since`/`until` bounds users type: datetimes, ISO-8601 strings or spans like "24h"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import pandas as pd

#: What `since`/`until` accept: a datetime (naive = UTC), an ISO-8601 string, a span such as "24h".
TimeBound: TypeAlias = datetime | pd.Timestamp | str | None

_SPAN = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_VALID_FORMS = (
    "a datetime (naive means UTC), an ISO-8601 string such as '2026-04-20T09:00:00Z', "
    "or a span before now such as '90m', '24h', '7d', '2w' (units s, m, h, d, w)"
)


def as_utc(value: Any) -> pd.Timestamp:
    """A timestamp in UTC: a naive value is taken to be UTC already, an aware one is converted."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_time_bound(value: TimeBound, *, name: str, now: datetime | None = None) -> pd.Timestamp | None:
    """Turn one bound into a UTC Timestamp (None stays None); a span counts back from `now`."""
    if value is None:
        return None
    if isinstance(value, datetime):  # pd.Timestamp is a datetime too
        return as_utc(value)
    if not isinstance(value, str):
        raise ValueError(f"{name}={value!r} is not a time bound: expected {_VALID_FORMS}")
    text = value.strip()
    span = _SPAN.fullmatch(text.lower())
    if span:
        seconds = float(span.group("amount")) * _UNIT_SECONDS[span.group("unit")]
        return pd.Timestamp(now or datetime.now(UTC)).tz_convert("UTC") - timedelta(seconds=seconds)
    try:
        stamp = pd.Timestamp(text) if text else None
    except (ValueError, OverflowError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise ValueError(f"{name}={value!r} is not a time bound: expected {_VALID_FORMS}")
    return as_utc(stamp)


def parse_window(since: TimeBound, until: TimeBound, *, now: datetime | None = None
                 ) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Both bounds at once, against one `now`, refusing a window that ends before it starts."""
    now = now or datetime.now(UTC)
    start = parse_time_bound(since, name="since", now=now)
    end = parse_time_bound(until, name="until", now=now)
    if start is not None and end is not None and start > end:
        raise ValueError(f"since={since!r} is after until={until!r}: since must not be later than until")
    return start, end
