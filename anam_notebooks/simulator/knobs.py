"""The simulator's misbehaviour knobs, validated up front, and its token-bucket rate limiter."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not a finite number")
    return float(value)


def _whole(name: str, value: object, valid: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is not valid: give {valid}")
    return value


@dataclass(frozen=True)
class Knobs:
    """How badly the simulated API behaves: slowness, faults, rate limits and live traffic."""

    api_key: str
    latency: float = 0.0
    fault_rate: float = 0.0
    rate_limit: float | None = None
    drift: int = 0
    seed: int = 0

    @classmethod
    def checked(cls, *, api_key: object, latency: object = 0.0, fault_rate: object = 0.0,
                rate_limit: object = None, drift: object = 0, seed: object = 0) -> Knobs:
        """Knobs from user input; any bad value is a ValueError naming it and the valid range."""
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string")
        try:
            lat = _number("latency", latency)
            if lat < 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"latency={latency!r} is not valid: give seconds >= 0, e.g. 0.05") from None
        try:
            fault = _number("fault_rate", fault_rate)
            if not 0 <= fault <= 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"fault_rate={fault_rate!r} is not valid: give a probability from 0 to 1") from None
        limit = None
        if rate_limit is not None:
            try:
                limit = _number("rate_limit", rate_limit)
                if limit <= 0:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"rate_limit={rate_limit!r} is not valid: give requests per second > 0, or None for no limit"
                ) from None
        return cls(api_key=api_key, latency=lat, fault_rate=fault, rate_limit=limit,
                   drift=_whole("drift", drift, "an integer >= 0 (sessions added per list request)"),
                   seed=_whole("seed", seed, "an integer >= 0"))


class TokenBucket:
    """`rate` requests per second with bursts of up to max(1, rate) requests."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a request may proceed, else the seconds until the next token."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
