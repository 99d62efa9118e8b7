"""End to end against the simulator: a hostile server (5xx, tight rate limit, connection
resets, live drift) still yields exactly the server's ids; connect() without a key."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from anam_notebooks import connect
from anam_notebooks.api.client import AnamClient, Backoff
from anam_notebooks.simulator import DEMO_API_KEY, create_app


class Resets(httpx.AsyncBaseTransport):
    """Wraps a transport; now and then the connection drops before or after the server answers."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rate: float, seed: int = 1) -> None:
        self.inner, self.rate, self.rng = inner, rate, random.Random(seed)
        self.resets = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        roll = self.rng.random()
        if roll < self.rate / 2:
            self.resets += 1
            raise httpx.ConnectError("connection reset by peer", request=request)
        response = await self.inner.handle_async_request(request)
        if roll < self.rate:
            self.resets += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


async def quick_sleep(seconds: float) -> None:
    """Real waiting, scaled down 50x so Retry-After: 1 costs 20 ms."""
    await asyncio.sleep(seconds / 50)


def test_hostile_server_still_gives_exactly_the_server_set(fleet):
    app = create_app(fleet, fault_rate=0.10, rate_limit=10, drift=2, seed=3)
    transport = Resets(httpx.ASGITransport(app=app), rate=0.06)
    with AnamClient(DEMO_API_KEY, "https://simulator", transport=transport, max_retries=10,
                    backoff=Backoff(sleep=quick_sleep)) as client:
        ids = [s["id"] for s in client.iter_sessions()]
    stats = app.state.simulator.stats
    assert stats[429] and (stats[500] + stats[502] + stats[503]) and transport.resets
    assert len(ids) == len(set(ids))
    assert set(ids) == set(app.state.simulator.fleet.by_id)


def test_real_loopback_server_with_faults(fleet, loopback_server):
    app = create_app(fleet, fault_rate=0.1, drift=1, seed=5)
    url = loopback_server(app)
    with AnamClient(DEMO_API_KEY, url, max_retries=8, backoff=Backoff(sleep=quick_sleep)) as client:
        ids = [s["id"] for s in client.iter_sessions()]
        one = client.get_session(ids[-1])
    assert set(ids) == set(app.state.simulator.fleet.by_id) and len(ids) == len(set(ids))
    assert one["id"] == ids[-1]


def test_resource_methods_against_the_simulator(fleet, sim_app):
    from anam_notebooks import NotFoundError

    sid = fleet.sessions[10]["id"]
    with AnamClient(DEMO_API_KEY, "http://simulator", transport=httpx.ASGITransport(app=sim_app)) as c:
        assert c.get_session(f"https://lab.anam.ai/sessions/{sid.upper()}") == fleet.by_id[sid]
        kept = [s["id"] for s in fleet.sessions if s["id"] in fleet.transcripts][:1]
        if kept:
            assert c.get_transcript(kept[0])["sessionId"] == kept[0]
        with pytest.raises(NotFoundError, match="not found"):
            c.get_session("00000000-0000-4000-8000-000000000000")
        urls, missing = 0, 0
        for s in fleet.sessions[:40]:
            try:
                assert c.get_recording_url(s["id"]).startswith("http")
                urls += 1
            except NotFoundError:
                missing += 1
        assert urls and urls + missing == 40


def test_wrong_key_is_refused_by_the_simulator(sim_app):
    from anam_notebooks import AuthenticationError

    with AnamClient("sk-not-the-demo-key", "http://simulator",
                    transport=httpx.ASGITransport(app=sim_app)) as client:
        with pytest.raises(AuthenticationError, match="ANAM_API_KEY") as info:
            client.list_sessions()
    assert "sk-not-the-demo-key" not in str(info.value)


def test_connect_without_key_uses_the_simulator(monkeypatch, capsys):
    monkeypatch.delenv("ANAM_API_KEY", raising=False)
    with connect(concurrency=4) as client:
        assert client.source == "simulator"
        page = client.list_sessions(per_page=5)
    assert len(page["data"]) == 5
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and "simulator" in said[0] and "ANAM_API_KEY" in said[0]
