"""Simulator speed: fleet generation for 20,000 sessions, and p50/p95 time to serve a
100-record page in-process (ASGI) and over loopback, against a single-session get measured
the same way in the same run."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

import httpx
from starlette.requests import Request

from anam_notebooks.simulator import DEMO_API_KEY, create_app, generate_fleet, running_server

SESSIONS = 20_000
REQUESTS = 200
END = datetime(2026, 4, 20, 12, tzinfo=UTC)
HEADERS = {"Authorization": f"Bearer {DEMO_API_KEY}"}


def quantiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    cuts = statistics.quantiles(samples, n=20)
    return statistics.median(samples) * 1000, cuts[18] * 1000


def page_urls(fleet) -> tuple[list[str], list[str]]:
    pages = [f"/v1/sessions?perPage=100&page={1 + i % (SESSIONS // 100)}" for i in range(REQUESTS)]
    gets = [f"/v1/sessions/{fleet.sessions[(i * 97) % SESSIONS]['id']}" for i in range(REQUESTS)]
    return pages, gets


async def time_asgi(app, urls: list[str]) -> list[float]:
    samples = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim",
                                 headers=HEADERS) as client:
        for url in urls:
            started = time.perf_counter()
            response = await client.get(url)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
    return samples


def time_loopback(base_url: str, urls: list[str]) -> list[float]:
    samples = []
    with httpx.Client(base_url=base_url, headers=HEADERS) as client:
        for url in urls:
            started = time.perf_counter()
            response = client.get(url)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
    return samples


def time_handler(app, urls: list[str]) -> list[float]:
    """The simulator's own work per request (no HTTP stack): filter, page, join cached JSON."""
    sim, samples = app.state.simulator, []
    for url in urls:
        path, _, query = url.partition("?")
        request = Request({"type": "http", "method": "GET", "path": path, "headers": [],
                           "query_string": query.encode(), "path_params": {"id": path.rsplit("/", 1)[1]}})
        handler = sim.list_sessions if path == "/v1/sessions" else sim.get_session
        started = time.perf_counter()
        handler(request)
        samples.append(time.perf_counter() - started)
    return samples


def report(label: str, pages: list[float], gets: list[float]) -> None:
    (p50, p95), (g50, g95) = quantiles(pages), quantiles(gets)
    print(f"{label:<22} page of 100: p50 {p50:6.2f} ms  p95 {p95:6.2f} ms | single get: p50 {g50:6.2f} ms  "
          f"p95 {g95:6.2f} ms | page/get p50 ratio {p50 / g50:4.1f}x")


def main() -> None:
    small_started = time.perf_counter()
    generate_fleet(seed=1, sessions=1000, end=END)
    small = time.perf_counter() - small_started
    started = time.perf_counter()
    fleet = generate_fleet(seed=1, sessions=SESSIONS, end=END)
    seconds = time.perf_counter() - started
    print(f"generate_fleet({SESSIONS:,}): {seconds:.2f} s ({seconds / SESSIONS * 1e6:.1f} µs/session); "
          f"1,000 sessions: {small:.3f} s; scaling ratio {seconds / small:.1f}x for 20x the sessions")

    pages, gets = page_urls(fleet)
    app = create_app(fleet)
    asyncio.run(time_asgi(app, pages + gets))  # warm-up: imports, every record serialised once
    report("in-process, cold", asyncio.run(time_asgi(create_app(fleet), pages)),
           asyncio.run(time_asgi(create_app(fleet), gets)))
    report("handler only, warm", time_handler(app, pages), time_handler(app, gets))
    report("in-process, warm", asyncio.run(time_asgi(app, pages)), asyncio.run(time_asgi(app, gets)))
    with running_server(app) as base_url:
        time_loopback(base_url, pages[:20])
        report("loopback (uvicorn)", time_loopback(base_url, pages), time_loopback(base_url, gets))


if __name__ == "__main__":
    main()
