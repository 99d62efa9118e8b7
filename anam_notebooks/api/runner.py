"""Runs the async core for the sync facade on one background event loop per process.

Why a thread and not nest-asyncio on the caller's loop: an httpx.AsyncClient's pool is bound
to the loop it first ran on, so every call must land on the same loop. A loop of our own works
the same in plain Python, in other threads, in a Jupyter kernel whose loop is already running, in
a cell that also uses top-level `await`, and under papermill. nest-asyncio also works in a kernel,
but it patches asyncio for every library in the process, and while a request waits the nested
loop goes on handling other kernel messages (a second widget click, say) re-entrantly; here the
kernel simply waits for the answer.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop serving forever on a daemon thread, started on first use (never at import)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if self._loop is None or self._pid != os.getpid() or not alive:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=_serve, args=(loop, ready),
                                          name="anam-notebooks-loop", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the background loop and wait for its result (Ctrl-C cancels it)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "a sync AnamClient method was called from inside the client's own event loop "
                "(e.g. from a stop= callback): use the AsyncAnamClient there instead")
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator drained from the caller's thread, item by item, on the background
        loop; closing the iterator early closes `items` (cancelling what it had pending)."""
        try:
            while (item := self.run(_next_item(items))) is not _END:
                yield item  # type: ignore[misc]
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                self.finish(aclose())

    def finish(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run clean-up `coro`: wait for it, or just schedule it when called from the loop."""
        if self.in_loop_thread():
            task = asyncio.get_running_loop().create_task(coro)
            _cleanups.add(task)
            task.add_done_callback(_cleanups.discard)
        else:
            self.run(coro)


_END = object()


async def _next_item(items: AsyncIterator[T]) -> T | object:
    try:
        return await anext(items)
    except StopAsyncIteration:
        return _END


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


_cleanups: set[asyncio.Task[Any]] = set()
RUNNER = LoopThread()
