"""iter_sessions speed: 20,000 sessions from the simulator on loopback (real uvicorn) at 50 ms
per request, against sequential paging over one connection and a new client per request.

The server runs in its own process, as a real API would: in this one it would share the GIL
and bill its JSON encoding to the client being measured.

Targets: >= 5x faster than sequential, and >= 70 % of the floor ceil(N/100) x latency / concurrency.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from anam_notebooks.api.client import AnamClient
from anam_notebooks.simulator import DEMO_API_KEY, create_app, running_server

SESSIONS = 20_000
LATENCY = 0.05
PER_PAGE = 100
HEADERS = {"Authorization": f"Bearer {DEMO_API_KEY}"}


def _serve(urls: multiprocessing.Queue, done: multiprocessing.Event) -> None:
    app = create_app(sessions=SESSIONS, latency=LATENCY, seed=1)
    with running_server(app) as url:
        urls.put(url)
        done.wait()


@contextmanager
def server_process() -> Iterator[str]:
    """The simulator behind uvicorn in a child process; yields its loopback URL."""
    ctx = multiprocessing.get_context("spawn")
    urls, done = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_serve, args=(urls, done), daemon=True)
    child.start()
    try:
        yield urls.get(timeout=60)
    finally:
        done.set()
        child.join(timeout=10)


def sequential_one_connection(url: str) -> int:
    """Baseline (a): page after page on one kept-alive connection."""
    count, page = 0, 1
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as http:
        while True:
            data = http.get("/v1/sessions", params={"page": page, "perPage": PER_PAGE}).json()["data"]
            if not data:
                return count
            count += len(data)
            page += 1


def new_client_per_request(url: str) -> int:
    """Baseline (b): page after page, each on a fresh client (new connection every time)."""
    count, page = 0, 1
    while True:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as http:
            data = http.get("/v1/sessions", params={"page": page, "perPage": PER_PAGE}).json()["data"]
        if not data:
            return count
        count += len(data)
        page += 1


def timed(label: str, run) -> float:
    started = time.perf_counter()
    count = run()
    elapsed = time.perf_counter() - started
    print(f"  {label:<34} {elapsed:7.2f} s  ({count} sessions)")
    assert count == SESSIONS, f"{label} read {count} sessions, expected {SESSIONS}"
    return elapsed


def main() -> None:
    with server_process() as url:
        with AnamClient(DEMO_API_KEY, url) as client:
            concurrency = client._async.concurrency
            # Untimed pass: the simulator caches each record's JSON on first use.
            sum(1 for _ in client.iter_sessions())
            print(f"iter_sessions: {SESSIONS} sessions, {LATENCY * 1000:.0f} ms per request, "
                  f"concurrency {concurrency}")
            ours = timed("AnamClient.iter_sessions", lambda: sum(1 for _ in client.iter_sessions()))
        sequential = timed("(a) sequential, one connection", lambda: sequential_one_connection(url))
        fresh = timed("(b) new client per request", lambda: new_client_per_request(url))
    floor = math.ceil(SESSIONS / PER_PAGE) * LATENCY / concurrency
    print(f"  speed-up vs (a): {sequential / ours:5.1f}x   (target >= 5x)")
    print(f"  speed-up vs (b): {fresh / ours:5.1f}x")
    print(f"  floor {floor:.2f} s -> efficiency {floor / ours:5.0%}   (target >= 70 %)")


if __name__ == "__main__":
    main()
