"""Adaptive concurrency limit (AIMD): halve on 429, creep back up one slot per window of successes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class AdaptiveLimiter:
    """Bounds requests in flight to `limit`, which moves between 1 and `maximum`.

    A 429 halves the limit, once per burst: throttles from requests that started before the
    last cut are the same congestion event and do not cut again. Each success adds 1/limit,
    so a full window of successes regains one slot.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self._epoch = 0
        self._cond: asyncio.Condition | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold one slot for one request; yields the epoch the request started in."""
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        try:
            yield self._epoch
        finally:
            async with cond:
                self.in_flight -= 1
                cond.notify_all()

    def throttled(self, epoch: int) -> None:
        """The server answered 429 to a request that started in `epoch`."""
        if epoch == self._epoch:
            self.limit = max(1.0, self.limit / 2)
            self._epoch += 1

    def succeeded(self) -> None:
        """A request got through; call it while still holding the slot (release wakes waiters)."""
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)

    def _condition(self) -> asyncio.Condition:
        # Created on first use so the limiter binds to the loop that actually runs requests.
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond
