"""The one request path: retries with backoff (time injected, never slept), Retry-After,
error mapping, transport failures and the adaptive concurrency limit."""

from __future__ import annotations

import email.utils

import httpx
import pytest
import respx

from anam_notebooks import (
    AnamAPIError,
    AnamConnectionError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from anam_notebooks.api.client import AnamClient, AsyncAnamClient, Backoff
from anam_notebooks.api.limiter import AdaptiveLimiter
from anam_notebooks.api.retry import parse_retry_after

BASE = "https://api.test"
SID = "8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a6978"
PATH = f"/v1/sessions/{SID}"
NOW = 1_800_000_000.0


class FakeTime:
    """Records every wait instead of sleeping."""

    def __init__(self, jitter: float = 0.0) -> None:
        self.waits: list[float] = []
        self.backoff = Backoff(sleep=self.sleep, now=lambda: NOW, random=lambda: jitter)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api():
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def make(clock: FakeTime, **kw) -> AsyncAnamClient:
    return AsyncAnamClient("sk-test", BASE, backoff=clock.backoff, **kw)


def err(status: int, message: str = "nope", headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"statusCode": status, "message": message}, headers=headers)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_then_succeed(api, clock, status):
    route = api.get(PATH).mock(side_effect=[err(status), err(status), httpx.Response(200, json={"id": SID})])
    async with make(clock) as client:
        assert await client.get_session(SID) == {"id": SID}
    assert route.call_count == 3
    assert clock.waits == [0.5, 1.0]


async def test_exponential_backoff_until_retries_are_spent(api, clock):
    route = api.get(PATH).mock(return_value=err(503, "engine pool drained"))
    async with make(clock) as client:
        with pytest.raises(ServerError) as info:
            await client.get_session(SID)
    assert route.call_count == 5
    assert clock.waits == [0.5, 1.0, 2.0, 4.0]
    exc = info.value
    assert (exc.status_code, exc.method, exc.path) == (503, "GET", PATH)
    assert "GET /v1/sessions/" in str(exc) and "engine pool drained" in str(exc)
    assert "after 5 attempts" in str(exc)


async def test_backoff_has_jitter_and_a_ceiling(api):
    clock = FakeTime(jitter=1.0)
    api.get(PATH).mock(return_value=err(500))
    async with AsyncAnamClient("k", BASE, max_retries=6,
                               backoff=Backoff(sleep=clock.sleep, random=lambda: 1.0)) as client:
        with pytest.raises(ServerError):
            await client.get_session(SID)
    assert clock.waits == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0]


async def test_max_retries_is_configurable(api, clock):
    route = api.get(PATH).mock(return_value=err(500))
    async with make(clock, max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.get_session(SID)
    assert route.call_count == 1 and clock.waits == []


async def test_retry_after_seconds_is_honoured(api, clock):
    api.get(PATH).mock(side_effect=[err(429, "slow down", {"Retry-After": "7"}),
                                    httpx.Response(200, json={"id": SID})])
    async with make(clock) as client:
        await client.get_session(SID)
    assert clock.waits == [7.0]


@pytest.mark.parametrize("status, retry_after, waited", [
    (503, email.utils.formatdate(NOW + 12, usegmt=True), 12.0),   # an HTTP date
    (429, "86400", 60.0),                                         # capped
    (429, "soon-ish", 0.5),                                       # unreadable: the backoff instead
], ids=["http-date", "capped", "unreadable"])
async def test_retry_after_forms_set_the_wait(api, clock, status, retry_after, waited):
    api.get(PATH).mock(side_effect=[err(status, headers={"Retry-After": retry_after}),
                                    httpx.Response(200, json={"id": SID})])
    async with make(clock) as client:
        await client.get_session(SID)
    assert clock.waits == [waited]


def test_parse_retry_after_forms():
    assert parse_retry_after("3", NOW) == 3.0
    assert parse_retry_after("1.5", NOW) == 1.5
    assert parse_retry_after(email.utils.formatdate(NOW - 30, usegmt=True), NOW) == 0.0
    assert parse_retry_after("-4", NOW) == 0.0
    assert parse_retry_after("nan", NOW) is None
    assert parse_retry_after("Tuesday-ish", NOW) is None


@pytest.mark.parametrize("hint", ["0", email.utils.formatdate(NOW - 3600, usegmt=True)],
                         ids=["zero", "past-date"])
async def test_a_retry_after_of_zero_or_in_the_past_falls_back_to_backoff(api, clock, hint):
    route = api.get(PATH).mock(side_effect=[err(429, headers={"Retry-After": hint}),
                                            err(503, headers={"Retry-After": hint}),
                                            httpx.Response(200, json={"id": SID})])
    async with make(clock) as client:
        assert await client.get_session(SID) == {"id": SID}
    assert route.call_count == 3
    assert clock.waits == [0.5, 1.0]  # the backoff schedule, not two immediate retries


async def test_a_future_retry_after_date_is_waited_for(api, clock):
    hint = email.utils.formatdate(NOW + 7, usegmt=True)
    api.get(PATH).mock(side_effect=[err(429, headers={"Retry-After": hint}), httpx.Response(200, json={"id": SID})])
    async with make(clock) as client:
        await client.get_session(SID)
    assert clock.waits == [pytest.approx(7.0)]


async def test_rate_limit_after_retries_is_a_rate_limit_error(api, clock):
    api.get(PATH).mock(return_value=err(429, "Rate limit exceeded", {"Retry-After": "1"}))
    async with make(clock, max_retries=2) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_session(SID)
    assert info.value.status_code == 429 and "Rate limit exceeded" in str(info.value)
    assert clock.waits == [1.0, 1.0]


@pytest.mark.parametrize("status,cls", [(400, BadRequestError), (404, NotFoundError),
                                        (401, AuthenticationError), (403, AnamAPIError),
                                        (422, AnamAPIError)])
async def test_client_errors_are_typed_and_not_retried(api, clock, status, cls):
    route = api.get(PATH).mock(return_value=err(status, f"server says {status}"))
    async with make(clock) as client:
        with pytest.raises(cls) as info:
            await client.get_session(SID)
    assert route.call_count == 1 and clock.waits == []
    assert info.value.status_code == status
    assert f"GET {PATH} -> {status}" in str(info.value)
    assert f"server says {status}" in str(info.value)


async def test_401_says_the_key_was_refused_and_how_to_set_it(api, clock):
    api.get(PATH).mock(return_value=err(401, "Invalid or missing API key"))
    async with make(clock) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_session(SID)
    message = str(info.value)
    assert "refused" in message and "ANAM_API_KEY" in message
    assert "Invalid or missing API key" in message


async def test_plain_text_error_body_is_quoted(api, clock):
    api.get(PATH).mock(return_value=httpx.Response(404, text="no such thing"))
    async with make(clock) as client:
        with pytest.raises(NotFoundError, match="no such thing"):
            await client.get_session(SID)


@pytest.mark.parametrize("exc", [httpx.ConnectError("connection refused"),
                                 httpx.ReadError("connection reset by peer"),
                                 httpx.RemoteProtocolError("peer closed connection"),
                                 httpx.ConnectTimeout("connect timed out"),
                                 httpx.ReadTimeout("read timed out")])
async def test_transport_failures_and_timeouts_are_retried(api, clock, exc):
    route = api.get(PATH).mock(side_effect=[exc, httpx.Response(200, json={"id": SID})])
    async with make(clock) as client:
        assert await client.get_session(SID) == {"id": SID}
    assert route.call_count == 2 and clock.waits == [0.5]


async def test_transport_failure_after_retries_is_a_connection_error(api, clock):
    api.get(PATH).mock(side_effect=httpx.ReadTimeout("read timed out"))
    async with make(clock, max_retries=3) as client:
        with pytest.raises(AnamConnectionError) as info:
            await client.get_session(SID)
    assert "GET /v1/sessions/" in str(info.value) and "ReadTimeout" in str(info.value)
    assert "after 4 attempts" in str(info.value)
    assert clock.waits == [0.5, 1.0, 2.0]


async def test_non_json_success_is_a_clear_error(api, clock):
    api.get(PATH).mock(return_value=httpx.Response(200, text="<html>gateway</html>",
                                                   headers={"content-type": "text/html"}))
    async with make(clock) as client:
        with pytest.raises(AnamAPIError, match="not JSON"):
            await client.get_session(SID)


async def test_bearer_header_timeouts_and_query(api, clock):
    route = api.get("/v1/sessions").mock(return_value=httpx.Response(
        200, json={"data": [], "meta": {"total": 0, "lastPage": 1}}))
    async with make(clock, timeout=12.0) as client:
        await client.list_sessions(page=2, per_page=50, search="lab chat")
        pool = client._core._http()
        assert pool.timeout.read == 12.0 and pool.timeout.connect == 5.0
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer sk-test"
    assert dict(request.url.params) == {"page": "2", "perPage": "50", "search": "lab chat"}


def test_sync_facade_retries_on_one_pool(api, clock):
    route = api.get(PATH).mock(side_effect=[err(500), httpx.Response(200, json={"id": SID})] * 50)
    with AnamClient("sk-test", BASE, backoff=clock.backoff) as client:
        for _ in range(50):
            assert client.get_session(SID) == {"id": SID}
    assert route.call_count == 100 and len(clock.waits) == 50


async def test_limiter_halves_once_per_burst_and_recovers():
    limiter = AdaptiveLimiter(8)
    async with limiter.slot() as epoch:
        limiter.throttled(epoch)
        limiter.throttled(epoch)   # same burst: no second cut
    assert limiter.limit == 4
    async with limiter.slot() as epoch:
        limiter.throttled(epoch)
    assert limiter.limit == 2
    for _ in range(40):
        async with limiter.slot():
            limiter.succeeded()
    assert limiter.limit == 8


async def test_limiter_bounds_requests_in_flight(api, clock):
    import asyncio

    in_flight, peak = 0, 0

    async def slow(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"id": SID})

    api.get(PATH).mock(side_effect=slow)
    async with make(clock, concurrency=3) as client:
        await asyncio.gather(*(client.get_session(SID) for _ in range(20)))
    assert peak == 3
