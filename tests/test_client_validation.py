"""Validation before any request, configuration, and the API key never showing anywhere."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import httpx
import pytest
import respx

from anam_notebooks import (
    AnamConnectionError,
    AuthenticationError,
    ConfigurationError,
    InvalidSessionId,
    NotFoundError,
    ServerError,
    connect,
)
from anam_notebooks.api.client import AnamClient, AsyncAnamClient, Backoff
from anam_notebooks.api.ids import normalize_session_id

SID = "8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a6978"
KEY = "sk-live-4f9c2b7e1d0a8c3b"
BASE = "https://api.test"


class NoNetwork(httpx.AsyncBaseTransport):
    """Fails the test if anything is sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise AssertionError(f"unexpected request {request.url}")


@pytest.fixture
def offline() -> NoNetwork:
    return NoNetwork()


@pytest.mark.parametrize("given", [
    SID, SID.upper(), f"  {SID}\n", f"{{{SID}}}", f"urn:uuid:{SID}", SID.replace("-", ""),
    f"https://lab.anam.ai/sessions/{SID}", f"https://lab.anam.ai/sessions/{SID.upper()}?tab=logs",
    uuid.UUID(SID),
])
def test_ids_are_normalised(given):
    assert normalize_session_id(given) == SID


@pytest.mark.parametrize("bad", [
    "", "abc", "8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a697", f"{SID}x", "8f6c2f2e1c1a-4b7e-9f5e-2d3c4b5a6978-",
    f"https://lab.anam.ai/compare/{SID}/{uuid.uuid4()}", "https://lab.anam.ai/sessions/",
    None, 123, b"8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a6978", "../../v1/sessions",
])
def test_bad_ids_raise_before_any_request(offline, bad):
    client = AnamClient(KEY, BASE, transport=offline)
    for method in (client.get_session, client.get_transcript, client.get_recording_url):
        with pytest.raises(InvalidSessionId) as info:
            method(bad)
        assert isinstance(info.value, ValueError)
        assert repr(bad)[:40] in str(info.value) and "UUID" in str(info.value)
    client.close()
    assert offline.requests == []


@pytest.mark.parametrize("kw,needle", [
    ({"per_page": 0}, "1..100"), ({"per_page": 101}, "1..100"), ({"per_page": "10"}, "1..100"),
    ({"per_page": True}, "1..100"), ({"page": 0}, "from 1"), ({"page": 1.5}, "from 1"),
    ({"persona_id": "not-a-uuid"}, "persona_id='not-a-uuid' is not a UUID"),
    ({"api_key_id": 42}, "api_key_id=42"), ({"search": 7}, "search=7"),
])
def test_list_arguments_are_checked_before_any_request(offline, kw, needle):
    with AnamClient(KEY, BASE, transport=offline) as client:
        with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(".", r"\.")):
            client.list_sessions(**kw)
    assert offline.requests == []


@pytest.mark.parametrize("kw,needle", [
    ({"per_page": 500}, "1..100"), ({"since": datetime(2026, 4, 20)}, "timezone-aware"),
    ({"since": "yesterday"}, "timezone-aware"), ({"stop": "stored"}, "callable"),
])
def test_iter_arguments_are_checked_when_called(offline, kw, needle):
    with AnamClient(KEY, BASE, transport=offline) as client:
        with pytest.raises(ValueError, match=needle):
            client.iter_sessions(**kw)   # raises at the call, before iteration starts
    assert offline.requests == []


def test_missing_key_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("ANAM_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ANAM_API_KEY"):
        AnamClient()
    monkeypatch.setenv("ANAM_API_KEY", "   ")
    with pytest.raises(ConfigurationError, match="ANAM_API_KEY"):
        AsyncAnamClient()


def test_key_and_url_from_environment(monkeypatch):
    monkeypatch.setenv("ANAM_API_KEY", KEY)
    monkeypatch.setenv("ANAM_API_URL", "http://localhost:8123/")
    with AnamClient() as client:
        assert client.base_url == "http://localhost:8123" and client.source == client.base_url
    monkeypatch.delenv("ANAM_API_URL")
    with AnamClient() as client:
        assert client.base_url == "https://api.anam.ai"


@pytest.mark.parametrize("kw,needle", [
    ({"base_url": "api.anam.ai"}, "base_url='api.anam.ai'"),
    ({"base_url": "ftp://x"}, "base_url='ftp://x'"),
    ({"max_retries": -1}, "max_retries=-1"), ({"concurrency": 0}, "concurrency=0"),
    ({"timeout": 0}, "timeout=0"), ({"transport": object()}, "AsyncBaseTransport"),
])
def test_bad_configuration_is_named(kw, needle):
    with pytest.raises(ConfigurationError, match=needle):
        AnamClient(KEY, **{"base_url": BASE, **kw})


def test_closed_client_refuses_politely():
    client = AnamClient(KEY, BASE)
    client.close()
    with pytest.raises(ConfigurationError, match="closed"):
        client.get_session(SID)


def test_connect_uses_the_key_when_there_is_one(monkeypatch):
    monkeypatch.setenv("ANAM_API_KEY", KEY)
    with connect(base_url=BASE) as client:
        assert isinstance(client, AnamClient) and client.source == BASE


def test_connect_refuses_a_base_url_without_key(monkeypatch):
    monkeypatch.delenv("ANAM_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="without an API key"):
        connect(base_url=BASE)


# -- the key never shows ------------------------------------------------------------------

def _everything_logged(caplog) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)


def test_key_is_in_no_repr_str_or_vars():
    sync, asyn = AnamClient(KEY, BASE), AsyncAnamClient(KEY, BASE)
    for obj in (sync, asyn, asyn._core, asyn._core._key):
        assert KEY not in repr(obj) and KEY not in str(obj)
        assert KEY not in repr(getattr(obj, "__dict__", {}))
    assert KEY not in repr(asyn._core._http().headers)
    sync.close()


def test_key_is_in_no_log_line_exception_or_url(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("anam_notebooks", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    seen_urls: list[str] = []
    errors: list[Exception] = []
    with respx.mock(base_url=BASE, assert_all_called=False) as api:
        def record(request):
            seen_urls.append(str(request.url))
            return None

        api.route(host="api.test").mock(side_effect=record)
        api.get(f"/v1/sessions/{SID}").mock(side_effect=[
            httpx.Response(500, json={"message": f"echo: Bearer {KEY}"}),
            httpx.Response(401, json={"message": f"key {KEY} refused"})])
        api.get(f"/v1/sessions/{SID}/transcript").mock(side_effect=httpx.ConnectError(f"reset {KEY}"))
        api.get(f"/v1/sessions/{SID}/recording").mock(
            return_value=httpx.Response(404, text=f"Authorization: Bearer {KEY}"))
        api.get("/v1/sessions").mock(return_value=httpx.Response(503, json={"error": KEY}))
        with AnamClient(KEY, BASE, max_retries=1, backoff=Backoff(sleep=sleep)) as client:
            for call in (lambda: client.get_session(SID), lambda: client.get_transcript(SID),
                         lambda: client.get_recording_url(SID), lambda: list(client.iter_sessions())):
                with pytest.raises((AuthenticationError, AnamConnectionError, NotFoundError,
                                    ServerError)) as info:
                    call()
                errors.append(info.value)
    assert len(errors) == 4 and caplog.records
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in repr(exc.args)
        assert "[REDACTED]" in str(exc)
    assert KEY not in _everything_logged(caplog)
    assert all(KEY not in url for url in seen_urls)
