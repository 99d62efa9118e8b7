"""Filling the store from the API (`sync`): incremental refresh against the simulator, a
first read resumed after SIGKILL (with and without `since`), bounded re-reads, `sync_sessions`
and `anam-notebooks sync`."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import anam_notebooks.sync as sync_module
from anam_notebooks import fetch_sessions, sessions_frame
from anam_notebooks.api.source import SessionSource
from anam_notebooks.data.store import SessionStore
from anam_notebooks.simulator import create_app, demo_client, generate_fleet
from anam_notebooks.sync import refresh_store

END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


def refresh(store: SessionStore, client: SessionSource, **kw: Any) -> pd.DataFrame:
    """A sync of `store`, then the whole store as a frame."""
    refresh_store(store, client, **kw)
    return store.load()


def part_files(store: SessionStore) -> list[Path]:
    return sorted(store.path.glob("start_date=*/part-*.parquet"))


# -- incremental refresh against the simulator --------------------------------------------------

@pytest.fixture
def live():
    """A private fleet (its records get mutated) behind a simulator and a client."""
    app = create_app(generate_fleet(seed=11, sessions=800, span="2d", end=END))
    return app.state.simulator, demo_client(app)


def full_fetch(client: SessionSource) -> pd.DataFrame:
    return fetch_sessions(client, progress=False)


@pytest.mark.parametrize("new_sessions", [0, 1, 99, 100, 150, 250])
def test_refresh_after_new_and_ended_sessions_equals_a_full_fetch(tmp_path, live, new_sessions):
    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    first = refresh(store, client)
    assert len(first) == 800
    was_active = list(first.index[first.is_active])
    assert was_active
    simulator.add_sessions(new_sessions)
    for session_id in was_active:
        simulator.end_session(session_id)
    simulator.reset_stats()
    refreshed = refresh(store, client)
    list_requests = simulator.stats["list"]
    assert list_requests <= math.ceil(new_sessions / 100) + 2
    pd.testing.assert_frame_equal(refreshed, full_fetch(client))
    pd.testing.assert_frame_equal(store.load(), refreshed)
    assert not refreshed.loc[was_active, "is_active"].any()


def test_a_sync_gives_arrow_memory_back_and_leaves_the_default_pool_as_it_was(tmp_path, live, monkeypatch):
    """While a sync runs Arrow allocates from the system allocator (freed chunks go back to the
    operating system); the caller's default pool is back afterwards, also when the sync fails."""
    import pyarrow as pa

    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    before = pa.default_memory_pool().backend_name
    pools = []
    real_append = SessionStore.append

    def append(self, frame, **kw):
        pools.append(pa.default_memory_pool().backend_name)
        return real_append(self, frame, **kw)

    monkeypatch.setattr(SessionStore, "append", append)
    assert len(refresh(store, client)) == 800
    assert pools and set(pools) == {"system"} and pa.default_memory_pool().backend_name == before

    def broken(*args, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(sync_module, "_refresh_head", broken)
    with pytest.raises(OSError, match="disk full"):
        refresh_store(store, client)
    assert pa.default_memory_pool().backend_name == before


def test_a_long_new_head_is_read_in_full_whatever_the_page_budget(tmp_path, live, monkeypatch):
    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    refresh(store, client)
    monkeypatch.setattr(sync_module, "HEAD_PAGES", 1)
    simulator.add_sessions(450)  # a long weekend without a refresh
    pd.testing.assert_frame_equal(refresh(store, client), full_fetch(client))


def test_refresh_rereads_active_sessions_that_the_head_does_not_reach(tmp_path, live):
    simulator, client = live
    deep = simulator.fleet.sessions[300]  # about 18 hours before the newest session
    deep.update(endTime=None, sessionLengthMs=None, exitStatus=None)  # still running, far down
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    assert refresh(store, client).loc[deep["id"], "is_active"]
    simulator.end_session(deep["id"], status="BRAND_NEW_STATUS")
    simulator.reset_stats()
    refreshed = refresh(store, client)
    assert simulator.stats["list"] <= 2 and simulator.stats["get"] == 1
    row = refreshed.loc[deep["id"]]
    assert not row.is_active and row.exit_status == "BRAND_NEW_STATUS"
    pd.testing.assert_frame_equal(refreshed, full_fetch(client))


def test_refresh_with_since_reads_back_only_as_far_as_needed(tmp_path, live):
    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    since = END - pd.Timedelta(hours=6)
    recent = refresh(store, client, since=since)
    first_requests = simulator.stats["list"]
    assert first_requests < 8  # 800 sessions are 8 pages; 6 hours of 2 days is far fewer
    assert (recent.start_time >= since).sum() == (full_fetch(client).start_time >= since).sum()
    assert store.covered_since() == pd.Timestamp(since)
    simulator.reset_stats()
    everything = refresh(store, client)  # reaches further back than the cache: reads it all
    assert len(everything) == 800 and store.covered_since() is None


def test_fetch_sessions_with_a_cache_directory(tmp_path, live):
    simulator, client = live
    first = fetch_sessions(client, cache=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, full_fetch(client))
    simulator.add_sessions(30)
    simulator.reset_stats()
    second = fetch_sessions(client, cache=tmp_path, progress=False)
    assert len(second) == 830
    assert simulator.stats["list"] <= 1 + 3  # organisation look-up + the head
    [dataset] = [p for p in tmp_path.iterdir() if p.is_dir()]
    meta = json.loads((dataset / "_store.json").read_text())
    assert meta["key"].endswith(first.organization_id.iloc[0]) and meta["covered_since"] == "all"


def test_fetch_sessions_cache_true_uses_the_per_user_directory(tmp_path, live, monkeypatch):
    simulator, client = live
    monkeypatch.setenv("ANAM_NOTEBOOKS_CACHE", str(tmp_path / "user-cache"))
    fetch_sessions(client, cache=True, progress=False, limit=3)
    assert len(list((tmp_path / "user-cache").glob("sessions-*/_store.json"))) == 1


# -- resumable first read ---------------------------------------------------------------------

RESUMABLE_READER = """
import sys
import anam_notebooks.sync as sync_module
from anam_notebooks import AnamClient, fetch_sessions
from anam_notebooks.simulator import DEMO_API_KEY

sync_module.CHECKPOINT_ROWS = 300  # checkpoints every 3 pages instead of every 200
with AnamClient(DEMO_API_KEY, sys.argv[1], concurrency=2) as client:
    fetch_sessions(client, cache=sys.argv[2], progress=False)
print("finished", flush=True)
"""


def checkpointed(directory: Path) -> int:
    for checkpoint in directory.glob("sessions-*/_backfill.json"):
        try:
            return json.loads(checkpoint.read_text())["stored"]
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def killed_after(directory: Path, sessions: int, script: str, *args: str) -> int:
    """Run `script` in a child process, SIGKILL it once `directory`'s checkpoint holds
    `sessions` sessions, and return how many it holds then (the child must not have finished)."""
    reader = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    try:
        while checkpointed(directory) < sessions and reader.poll() is None:
            time.sleep(0.01)
    finally:
        reader.send_signal(signal.SIGKILL)
        reader.wait(timeout=30)
    assert reader.returncode == -signal.SIGKILL, "the reader finished before it could be killed"
    return checkpointed(directory)


@pytest.mark.slow
def test_a_first_read_killed_with_sigkill_resumes_where_it_stopped(tmp_path, fleet, loopback_server):
    """A real child process is SIGKILLed half way through a 3,000-session first read while new
    sessions keep arriving; the next run reads only the rest and ends with exactly the server's
    sessions."""
    from anam_notebooks.api.client import AnamClient
    from anam_notebooks.data.sessions import newest_first
    from anam_notebooks.simulator import DEMO_API_KEY

    app = create_app(fleet, latency=0.02, drift=1, seed=3)
    simulator = app.state.simulator
    url = loopback_server(app)
    stored = killed_after(tmp_path, 1500, RESUMABLE_READER, url, str(tmp_path))
    assert 1500 <= stored < 3000
    first_pages = simulator.stats["list"]
    simulator.reset_stats()
    with AnamClient(DEMO_API_KEY, url) as client:
        resumed = fetch_sessions(client, cache=tmp_path, progress=False)
    pages = simulator.stats["list"]
    # The rest of the list (and its drift) plus the head and a repair round, not all 30+ pages.
    unread = math.ceil((3000 + first_pages - stored) / 100)
    assert pages <= unread + 6, (pages, unread)
    assert resumed.index.is_unique
    assert set(resumed.index) == set(simulator.fleet.by_id)  # drift included, nothing twice
    expected = newest_first(sessions_frame(simulator.fleet.sessions))
    pd.testing.assert_frame_equal(resumed.sort_index(), expected.sort_index())
    assert not list(tmp_path.glob("sessions-*/_backfill.json"))  # finished: no checkpoint left


def test_a_finished_first_read_leaves_one_file_per_partition_and_no_checkpoint(tmp_path, live, monkeypatch):
    simulator, client = live
    monkeypatch.setattr(sync_module, "CHECKPOINT_ROWS", 100)
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    refresh(store, client)
    assert len(part_files(store)) == len(store.partitions())
    assert not (store.path / "_backfill.json").exists() and store.covered_since() is None


# -- cheap refresh --------------------------------------------------------------------------

def busy_fleet(active_head: int, deep_recent: int, deep_old: int):
    """800 sessions over 2 days with `active_head` active at the head, `deep_recent` active
    ones scattered over the last 20 hours and `deep_old` "active" for more than a day."""
    fleet = generate_fleet(seed=11, sessions=800, span="2d", end=END)
    sessions = fleet.sessions
    hours = [(END - pd.Timestamp(s["startTime"])).total_seconds() / 3600 for s in sessions]
    recent = [i for i, h in enumerate(hours) if 2 < h < 20][::7][:deep_recent]
    old = [i for i, h in enumerate(hours) if h > 26][::11][:deep_old]
    for i in [*range(active_head), *recent, *old]:
        sessions[i].update(endTime=None, sessionLengthMs=None, exitStatus=None)
    app = create_app(fleet)
    ids = [s["id"] for s in sessions]
    return app.state.simulator, demo_client(app), [ids[i] for i in recent], [ids[i] for i in old]


def test_a_warm_refresh_rereads_active_sessions_through_the_head_pages(tmp_path):
    simulator, client, _, _ = busy_fleet(active_head=250, deep_recent=0, deep_old=0)
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    first = refresh(store, client)
    assert first.is_active.sum() >= 250
    for sid in list(first.index[first.is_active])[:200]:
        simulator.end_session(sid)
    simulator.reset_stats()
    refreshed = refresh(store, client)
    # 250 active sessions sit on the first 3 pages: 3 pages and a check, never 250 GETs.
    assert simulator.stats["get"] == 0 and simulator.stats["list"] <= 3 + 2
    pd.testing.assert_frame_equal(refreshed, full_fetch(client))


@pytest.mark.slow
def test_a_refresh_spends_bounded_gets_on_stragglers_and_flags_stale_sessions(tmp_path, monkeypatch):
    monkeypatch.setattr(sync_module, "HEAD_PAGES", 2)  # as if the list were 50x longer
    monkeypatch.setattr(sync_module, "STRAGGLERS", 5)
    simulator, client, recent, old = busy_fleet(active_head=5, deep_recent=40, deep_old=12)
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    first = refresh(store, client)
    assert first.loc[old, "stale_active"].all() and first.stale_active.sum() == len(old)
    assert not first.loc[recent, "stale_active"].any() and first.loc[recent, "is_active"].all()
    for sid in [*recent, *old]:
        simulator.end_session(sid)  # the server now knows they ended
    for _ in range(12):
        simulator.reset_stats()
        summary = refresh_store(store, client)
        assert simulator.stats["get"] <= 5 and simulator.stats["list"] <= 2 + 2
    frame = store.load()
    # Five single GETs a refresh, least recently updated first, reach every live straggler...
    assert not frame.loc[recent, "is_active"].any()
    # ...while sessions "active" for more than a day are never asked for again, and say so.
    assert frame.loc[old, "is_active"].all() and frame.loc[old, "stale_active"].all()
    assert summary.stale_active == len(old) and summary.rereads <= 5


SINCE_READER = """
import sys
import anam_notebooks.sync as sync_module
from anam_notebooks import AnamClient, sync_sessions
from anam_notebooks.simulator import DEMO_API_KEY

sync_module.CHECKPOINT_ROWS = 200  # checkpoints every 2 pages instead of every 200
with AnamClient(DEMO_API_KEY, sys.argv[1], concurrency=2) as client:
    sync_sessions(client, since=sys.argv[3], cache=sys.argv[2], progress=False)
print("finished", flush=True)
"""


def test_a_sync_with_since_killed_with_sigkill_resumes_where_it_stopped(tmp_path, fleet, loopback_server):
    """A sync back to `since` (6 of the fleet's 7 days, about 2,600 sessions) is SIGKILLed half
    way; the next sync reads the rest, not the whole window again, and the store then holds
    every session of the window exactly once. (The resumed read pages through the list as a
    whole and stops once past `since`: the pages it had started ahead of that are the waste.)"""
    from anam_notebooks.api.client import AnamClient
    from anam_notebooks.simulator import DEMO_API_KEY

    since = (END - pd.Timedelta(days=6)).isoformat()
    app = create_app(fleet, latency=0.02, seed=3)
    simulator = app.state.simulator
    url = loopback_server(app)
    stored = killed_after(tmp_path, 1300, SINCE_READER, url, str(tmp_path), since)
    window = sum(1 for s in fleet.sessions if pd.Timestamp(s["startTime"]) >= pd.Timestamp(since))
    assert 1300 <= stored < window
    simulator.reset_stats()
    with AnamClient(DEMO_API_KEY, url, concurrency=2) as client:
        summary = an_sync(client, since, tmp_path)
    pages = simulator.stats["list"]
    whole = math.ceil(window / 100)
    assert summary.resumed == stored
    # The rest of the window, the pages started ahead past `since`, the head: not all of it.
    assert pages <= whole - stored // 100 + 8 and pages < 0.85 * whole, (pages, whole, stored)
    loaded = load_dataset(summary.path)
    assert loaded.index.is_unique
    expected = {s["id"] for s in fleet.sessions if pd.Timestamp(s["startTime"]) >= pd.Timestamp(since)}
    assert expected <= set(loaded.index)
    assert not list(tmp_path.glob("sessions-*/_backfill.json"))


def an_sync(client, since, cache):
    from anam_notebooks import sync_sessions

    return sync_sessions(client, since=since, cache=cache, progress=False)


def load_dataset(path: Path) -> pd.DataFrame:
    """The store at `path` as the dataset reads it (one row per session)."""
    from anam_notebooks import session_dataset

    return session_dataset(path).to_frame()


def test_the_sync_command_fills_the_store_and_prints_its_directory(tmp_path, loopback_server):
    from anam_notebooks.simulator import DEMO_API_KEY

    app = create_app(generate_fleet(seed=2, sessions=500, span="2d"))  # ends now: all within 30d
    url = loopback_server(app)
    env = {**os.environ, "ANAM_API_KEY": DEMO_API_KEY, "ANAM_API_URL": url}
    command = [sys.executable, "-m", "anam_notebooks", "sync", "--since", "30d", "--cache", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path and (path / "_store.json").exists()
    assert "500 sessions stored" in done.stderr and DEMO_API_KEY not in done.stdout + done.stderr
    app.state.simulator.reset_stats()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and app.state.simulator.stats["list"] <= 3  # the head only
    bad = subprocess.run([*command[:4], "--since", "last tuesday"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "last tuesday" in bad.stderr
