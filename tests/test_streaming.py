"""Streaming end to end: the pager keeps ids, not records; records flow into the frame page by
page; a failed page loses nothing (the partial frame rides on the error). Real HTTP to the
simulator in-process; the decoded records are made weak-referenceable to watch them die."""

from __future__ import annotations

import gc
import weakref

import httpx
import pytest

from anam_notebooks import PaginationError, fetch_sessions
from anam_notebooks.api import http
from anam_notebooks.api.client import AnamClient, Backoff
from anam_notebooks.simulator import DEMO_API_KEY, create_app


class Record(dict):
    """A session dict that a weakref can follow (plain dicts cannot be weakly referenced)."""


@pytest.fixture
def tracked(monkeypatch):
    """Weak references to every session record the client decodes from a list page."""
    refs: list[weakref.ref] = []
    real = http.decode_json

    def decode(content: bytes):
        body = real(content)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            body["data"] = [Record(r) for r in body["data"]]
            refs.extend(weakref.ref(r) for r in body["data"])
        return body

    monkeypatch.setattr(http, "decode_json", decode)
    return refs


async def _no_wait(seconds: float) -> None:
    return None


def client_for(app, concurrency: int = 4) -> AnamClient:
    return AnamClient(DEMO_API_KEY, "http://simulator", transport=httpx.ASGITransport(app=app),
                      concurrency=concurrency, max_retries=0, backoff=Backoff(sleep=_no_wait))


class FailingPage(httpx.AsyncBaseTransport):
    """The simulator, except that one list page always answers 500 (a broken page)."""

    def __init__(self, app, page: int) -> None:
        self.inner, self.page = httpx.ASGITransport(app=app), str(page)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sessions" and request.url.params.get("page") == self.page:
            return httpx.Response(500, json={"message": "page broken"})
        return await self.inner.handle_async_request(request)


def count_until(iterator, stop_at: int, refs: list[weakref.ref]) -> tuple[int, int]:
    """Consume `stop_at` records keeping none; return how many are alive then, and the rest."""
    for read, _record in enumerate(iterator, 1):
        if read == stop_at:
            break
    del _record
    return alive(refs), sum(1 for _ in iterator)


def alive(refs: list[weakref.ref]) -> int:
    gc.collect()
    return sum(ref() is not None for ref in refs)


def test_the_pager_keeps_no_record_it_has_handed_on(fleet, tracked):
    concurrency = 4
    with client_for(create_app(fleet), concurrency) as client:
        break_at, rest = count_until(client.iter_sessions(), 2500, tracked)
    assert 2500 + rest == len(fleet.sessions)
    # Only the page being handed out and the read-ahead window are alive, never all 2,500.
    window = (2 * concurrency + 2) * 100
    assert len(tracked) >= 2500 and break_at <= window, (break_at, window)
    assert alive(tracked) == 0


def test_sessions_frame_holds_records_only_chunk_by_chunk(fleet, tracked):
    peaks = []
    with client_for(create_app(fleet)) as client:
        import anam_notebooks.data.sessions as sessions_module

        real_chunk = sessions_module._chunk_table

        def watching(chunk, problems):
            peaks.append(alive(tracked))
            return real_chunk(chunk, problems)

        sessions_module._chunk_table = watching
        try:
            df = fetch_sessions(client, progress=False)
        finally:
            sessions_module._chunk_table = real_chunk
    assert len(df) == len(fleet.sessions)
    assert len(peaks) >= 3 and max(peaks) <= 2000  # one chunk (1,024) plus the read-ahead window


def test_a_failed_page_keeps_the_partial_frame_on_the_error(fleet):
    transport = FailingPage(create_app(fleet), page=7)
    with AnamClient(DEMO_API_KEY, "https://simulator", transport=transport, max_retries=0,
                    backoff=Backoff(sleep=_no_wait)) as client, pytest.raises(PaginationError) as info:
        fetch_sessions(client, progress=False)
    exc = info.value
    assert exc.failed_pages == [7] and exc.frame is not None
    assert set(exc.frame.index) == set(exc.ids)  # every record read is in the frame
    expected = {s["id"] for s in fleet.sessions[:600] + fleet.sessions[700:]}
    assert set(exc.frame.index) == expected
    assert not hasattr(exc, "records")
