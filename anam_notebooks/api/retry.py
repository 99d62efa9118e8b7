"""When and how long to wait before retrying a request: exponential backoff, jitter, Retry-After."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

RETRYABLE_STATUS = frozenset({408, 409, 429})

# Transport failures worth another attempt; protocol/config mistakes on our side are not.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or 500 <= status <= 599


@dataclass(frozen=True)
class Backoff:
    """Wait timing between attempts; `sleep`, `now` and `random` are injectable for tests.

    The n-th retry waits `initial * 2**n` seconds (at most `maximum`), minus up to 25 % jitter,
    unless the server sent a positive Retry-After, which is honoured up to `retry_after_cap`
    seconds. A Retry-After of 0 or a date already past gives no usable wait: retrying at once
    would only hammer a server that is shedding load, so the exponential backoff applies.
    """

    initial: float = 0.5
    maximum: float = 8.0
    retry_after_cap: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    now: Callable[[], float] = field(default=time.time)
    random: Callable[[], float] = field(default=random.random)

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        hinted = parse_retry_after(retry_after, self.now()) if retry_after else None
        if hinted is not None and hinted > 0:
            return min(hinted, self.retry_after_cap)
        base = min(self.initial * 2 ** retry, self.maximum)
        return base * (1.0 - 0.25 * self.random())


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when unreadable."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
