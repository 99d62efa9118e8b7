"""Adaptive concurrency limit (AIMD): halve on 429, creep back up one slot per window of successes."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class AdaptiveLimiter:
    """Bounds requests in flight to `limit`, which moves between 1 and `maximum`.

    A 429 halves the limit, once per burst: throttles from requests that started before the
    last cut are the same congestion event and do not cut again. Each success adds 1/limit,
    so a full window of successes regains one slot. Waiters are served first come, first
    served, and only as many are woken as there are free slots.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold one slot for one request; yields the epoch the request started in."""
        if self._waiters or self.in_flight >= int(self.limit):
            granted = asyncio.get_running_loop().create_future()
            self._waiters.append(granted)
            try:
                await granted          # the slot is counted for us when we are woken
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release()
                else:
                    self._waiters.remove(granted)
                raise
        else:
            self.in_flight += 1
        try:
            yield self._epoch
        finally:
            self._release()

    def throttled(self, epoch: int) -> None:
        """The server answered 429 to a request that started in `epoch`."""
        if epoch == self._epoch:
            self.limit = max(1.0, self.limit / 2)
            self._epoch += 1

    def succeeded(self) -> None:
        """A request got through: grow the limit by one slot per window."""
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
        self._wake()

    def _release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            granted = self._waiters.popleft()
            if not granted.done():
                self.in_flight += 1
                granted.set_result(None)
