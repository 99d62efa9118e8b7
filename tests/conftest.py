"""Shared fixtures: a fixed demo fleet, a simulator app over it, and ways to reach it; every
test reads and writes a session cache of its own, never the user's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import httpx
import pytest

from anam_notebooks.data.store import CACHE_DIR_ENV
from anam_notebooks.simulator import Fleet, create_app, generate_fleet, running_server

FLEET_END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
FLEET_SEED = 7
FLEET_SIZE = 3000


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory) -> Iterator[None]:
    """The per-user cache of the whole run (module fixtures that execute notebooks see this one):
    a temporary folder, inherited by papermill kernels through the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("user-cache")))
        patch.delenv("JPY_SESSION_NAME", raising=False)
        yield


@pytest.fixture(autouse=True)
def _test_cache(tmp_path_factory, monkeypatch) -> None:
    """Each test its own per-user cache, so no test sees another's sessions."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    """3,000 sessions over the 7 days before 2026-04-20T12:00Z, seed 7, incidents planted."""
    return generate_fleet(seed=FLEET_SEED, sessions=FLEET_SIZE, span="7d", end=FLEET_END)


@pytest.fixture
def sim_app(fleet: Fleet):
    """A fresh simulator app over the shared fleet (its own copy: drift never leaks)."""
    return create_app(fleet)


@pytest.fixture
def asgi_transport(sim_app) -> httpx.ASGITransport:
    """In-process transport to `sim_app`, for httpx.AsyncClient or AnamClient(transport=...)."""
    return httpx.ASGITransport(app=sim_app)


@pytest.fixture
def loopback_server() -> Iterator[Callable[..., str]]:
    """Call it with an app to serve it on 127.0.0.1 for this test; returns the base URL."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(running_server(app))
