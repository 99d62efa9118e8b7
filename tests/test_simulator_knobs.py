"""The simulator's knobs: validated up front, and each misbehaviour visible to a client."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from anam_notebooks.simulator import DEMO_API_KEY, create_app, demo_client, generate_fleet
from anam_notebooks.simulator import app as app_module

END = datetime(2026, 4, 20, 12, tzinfo=UTC)

AUTH = {"Authorization": f"Bearer {DEMO_API_KEY}"}


def api(app, key: str = DEMO_API_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim",
                             headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("knob, value, valid", [
    ("latency", -0.1, "seconds >= 0"), ("latency", "fast", "seconds >= 0"), ("latency", math.nan, "seconds >= 0"),
    ("fault_rate", 1.5, "from 0 to 1"), ("fault_rate", -0.1, "from 0 to 1"), ("fault_rate", True, "from 0 to 1"),
    ("rate_limit", 0, "requests per second > 0"), ("rate_limit", -5, "requests per second > 0"),
    ("rate_limit", "10/s", "requests per second > 0"),
    ("drift", -1, "integer >= 0"), ("drift", 1.5, "integer >= 0"),
    ("seed", -1, "integer >= 0"), ("seed", "abc", "integer >= 0"),
])
def test_bad_knobs_are_value_errors_naming_value_and_range(fleet, knob, value, valid):
    with pytest.raises(ValueError) as caught:
        create_app(fleet, **{knob: value})
    message = str(caught.value)
    assert f"{knob}={value!r}" in message and valid in message


def test_bad_api_key_and_options(fleet):
    with pytest.raises(ValueError, match="api_key"):
        create_app(fleet, api_key="  ")
    with pytest.raises(TypeError, match="fault"):
        create_app(fleet, fault=0.1)
    with pytest.raises(ValueError, match="not both"):
        create_app(fleet, sessions=10)


async def test_custom_key_is_the_only_key(fleet):
    app = create_app(fleet, api_key="team-key-123")
    async with api(app, "team-key-123") as good, api(app) as demo:
        assert (await good.get("/v1/sessions")).status_code == 200
        refused = await demo.get("/v1/sessions")
    assert refused.status_code == 401 and "team-key-123" not in refused.text


async def test_latency_sleeps_before_every_request(fleet, monkeypatch):
    slept = []
    real_sleep = app_module.asyncio.sleep

    async def recording_sleep(seconds):
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(app_module.asyncio, "sleep", recording_sleep)
    app = create_app(fleet, latency=0.25)
    async with api(app) as client:
        await client.get("/v1/sessions")
        await client.get(f"/v1/sessions/{fleet.sessions[0]['id']}")
    assert slept == [0.25, 0.25]


async def test_fault_rate_one_fails_everything_with_json_5xx(fleet):
    app = create_app(fleet, fault_rate=1.0)
    async with api(app) as client, api(app, "wrong") as stranger:
        responses = [await client.get("/v1/sessions") for _ in range(30)]
        refused = await stranger.get("/v1/sessions")
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {500, 502, 503} and len(codes) >= 2
    assert all(r.json()["statusCode"] == r.status_code and r.json()["message"] for r in responses)
    assert refused.status_code == 401, "authentication is checked before faults"


async def test_fault_injection_is_deterministic_per_seed(fleet):
    async def sequence(seed: int) -> list[int]:
        app = create_app(fleet, fault_rate=0.3, seed=seed)
        async with api(app) as client:
            return [(await client.get("/v1/sessions")).status_code for _ in range(60)]

    first, again, other = await sequence(5), await sequence(5), await sequence(6)
    assert first == again and first != other
    assert 8 <= sum(code != 200 for code in first) <= 30


async def test_rate_limit_answers_429_with_retry_after(fleet):
    app = create_app(fleet, rate_limit=2)
    async with api(app) as client:
        responses = [await client.get("/v1/sessions") for _ in range(6)]
    codes = [r.status_code for r in responses]
    assert codes[:2] == [200, 200] and 429 in codes
    limited = next(r for r in responses if r.status_code == 429)
    assert re.fullmatch(r"[1-9][0-9]*", limited.headers["Retry-After"])
    assert "rate limit" in limited.json()["message"].lower()
    assert app.state.simulator.stats[429] == codes.count(429)


async def test_stats_count_requests_by_endpoint_and_status(sim_app, fleet):
    sim = sim_app.state.simulator
    sid = fleet.sessions[10]["id"]
    async with api(sim_app) as client:
        await client.get("/v1/sessions")
        await client.get("/v1/sessions", params={"page": "x"})
        await client.get(f"/v1/sessions/{sid}")
        await client.get(f"/v1/sessions/{sid}/transcript")
        await client.get(f"/v1/sessions/{sid}/recording")
    assert sim.stats["total"] == 5
    assert (sim.stats["list"], sim.stats["get"], sim.stats["transcript"], sim.stats["recording"]) == (2, 1, 1, 1)
    assert sim.stats[400] == 1 and sim.stats[200] + sim.stats[404] == 4 and sim.stats[200] >= 2
    sim.reset_stats()
    assert sim.stats["total"] == 0


def test_demo_client_reads_the_whole_simulated_fleet():
    client = demo_client(sessions=250, seed=2, span="24h")
    page = client.list_sessions(page=1, per_page=100)
    assert page["meta"]["total"] == 250 and len(page["data"]) == 100
    ids = [r["id"] for r in client.iter_sessions()]
    assert len(ids) == len(set(ids)) == 250
    kept = next(r for r in page["data"] if not r["personaConfig"]["zeroDataRetention"])
    assert client.get_transcript(kept["id"])["sessionId"] == kept["id"]
    assert client.get_session(kept["id"]) == kept


def test_demo_client_over_a_given_app_uses_its_key(fleet):
    app = create_app(fleet, api_key="another-key")
    client = demo_client(app, max_retries=0)
    assert client.list_sessions(per_page=5)["meta"]["total"] == 3000
    assert app.state.simulator.stats["list"] == 1
    with pytest.raises(ValueError, match="not both"):
        demo_client(app, sessions=3)


def test_add_sessions_validates_its_count(sim_app):
    sim = sim_app.state.simulator
    assert sim.add_sessions(0) == []
    for bad in (-1, 2.0, "3"):
        with pytest.raises(ValueError, match=re.escape(f"n={bad!r}")):
            sim.add_sessions(bad)


async def test_end_session_finishes_an_active_session_on_the_wire():
    app = create_app(generate_fleet(seed=2, sessions=300, span="6h", end=END))
    sim = app.state.simulator
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim",
                                 headers={"Authorization": f"Bearer {DEMO_API_KEY}"}) as client:
        active = next(r for r in sim.fleet.sessions if r["endTime"] is None)
        assert (await client.get(f"/v1/sessions/{active['id']}")).json()["endTime"] is None
        ended = sim.end_session(active["id"], status="ERROR")
        served = (await client.get(f"/v1/sessions/{active['id']}")).json()
        assert served == ended and served["exitStatus"] == "ERROR"
        assert served["sessionLengthMs"] >= 180_000 and served["endTime"].endswith("Z")
        listed = (await client.get("/v1/sessions", params={"perPage": 100, "search": active["id"]})).json()
        assert listed["data"] == [served]
    with pytest.raises(ValueError, match="already ended"):
        sim.end_session(active["id"])
