"""A hostile HTTP server for fault tests: a real socket on a local address (asyncio streams on
a thread of its own), one behaviour per test, every connection and request recorded.

It is written on the bare socket on purpose: it misbehaves in ways a well-kept server never
would (a byte a second, a body of hundreds of megabytes made up as it is sent, a redirect
elsewhere, the client's key echoed back).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def page(self) -> int:
        return int(self.params.get("page", "1"))


Behaviour = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


class HostileServer:
    """`with HostileServer(behave) as server:` serves `await behave(request, writer)` on
    `server.url` (127.0.0.1 and a free port unless `host` says otherwise)."""

    def __init__(self, behave: Behaviour, host: str = "127.0.0.1") -> None:
        self.behave = behave
        self.host = host
        self.connections = 0
        self.requests: list[Request] = []
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-server", daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, 0), self._loop)
        self._server = started.result(timeout=10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *lines = head.split("\r\n")
            method, target, _ = line.split(" ", 2)
            parts = urlsplit(target)
            headers = dict((k.strip().lower(), v.strip()) for k, v in
                           (h.split(":", 1) for h in lines if ":" in h))
            request = Request(method, parts.path, dict(parse_qsl(parts.query)), headers)
            self.requests.append(request)
            await self.behave(request, writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def head(status: int = 200, reason: str = "OK", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(writer: asyncio.StreamWriter, body: object, status: int = 200, reason: str = "OK",
            headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    writer.write(head(status, reason, {"Content-Type": "application/json",
                                       "Content-Length": str(len(data)), **(headers or {})}) + data)


def session(number: int) -> dict[str, object]:
    """A small, valid session record; `number` makes its id."""
    minute = number % (60 * 24 * 365)
    return {"id": f"00000000-0000-4000-8000-{number:012d}", "organizationId": "org-hostile",
            "startTime": f"2026-{1 + minute // 43200 % 12:02d}-{1 + minute // 1440 % 28:02d}T"
                         f"{minute // 60 % 24:02d}:{minute % 60:02d}:00Z",
            "endTime": None, "exitStatus": None}


def page_of(page: int, per_page: int = 100) -> list[dict[str, object]]:
    return [session((page - 1) * per_page + i) for i in range(per_page)]
