"""The Parquet session store: a hive-partitioned dataset (read by DuckDB too), round trips,
foreign/corrupt files, the single-file cache of earlier versions, schema evolution, atomic
writes (a killed writer), two writing processes, and incremental refresh against the simulator."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anam_notebooks import fetch_sessions, sessions_frame
from anam_notebooks.data.store import CacheFileWarning, SessionStore, default_cache_dir, open_store
from anam_notebooks.simulator import create_app, demo_client, generate_fleet

END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
BASE = "https://api.anam.ai"
ORG = "o42dp8vwWJeMNFFhH6CUY"


def make_records(prefix: str, count: int, *, minute0: int = 0) -> list[dict]:
    return [{"id": f"{prefix}-{i:05d}", "organizationId": ORG, "clientLabel": f"{prefix} label",
             "startTime": f"2026-04-20T{(minute0 + i) // 60 % 24:02d}:{(minute0 + i) % 60:02d}:00Z",
             "endTime": None, "exitStatus": None, "engineHost": f"connect-eu.anam.ai/v1/webrtc/engines/"
             f"anam-engine-7dddcb9ccd-{prefix[:1]}{i % 7}b8v9", "updatedAt": "2026-04-20T12:00:00Z"}
            for i in range(count)]


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "cache", base_url=BASE, organization_id=ORG)


def test_empty_store_loads_a_typed_empty_frame(store):
    assert store.load().empty and list(store.load().columns) == list(sessions_frame([]).columns)
    assert store.covered_since() is False
    assert not store.path.exists()


def part_files(store: SessionStore) -> list[Path]:
    return sorted(store.path.glob("start_date=*/part-*.parquet"))


def temp_files(store: SessionStore) -> list[str]:
    return [p.name for p in store.directory.rglob("*.tmp")]


def test_merge_round_trips_every_column_and_dtype(store, fleet):
    frame = sessions_frame(fleet.sessions[:500])
    merged = store.merge(frame)
    loaded = store.load()
    pd.testing.assert_frame_equal(loaded, merged)
    expected = frame.sort_values("start_time", ascending=False)
    pd.testing.assert_frame_equal(loaded.sort_index(), expected.sort_index())


def test_merge_keeps_the_most_updated_row(store):
    [active] = make_records("m", 1)
    ended = dict(active, endTime="2026-04-20T12:05:00Z", exitStatus="NORMAL_EXIT",
                 updatedAt="2026-04-20T12:05:00Z")
    store.merge(sessions_frame([ended]))
    store.merge(sessions_frame([active]))  # a stale copy arriving later does not win
    row = store.load().loc["m-00000"]
    assert row.exit_status == "NORMAL_EXIT" and not row.is_active


def test_file_name_is_a_hash_of_base_url_and_organisation(tmp_path):
    a = SessionStore(tmp_path, base_url=BASE, organization_id="org-a")
    b = SessionStore(tmp_path, base_url=BASE, organization_id="org-b")
    c = SessionStore(tmp_path, base_url="http://localhost:8000/", organization_id="org-a")
    assert len({a.path, b.path, c.path}) == 3
    assert "org-a" not in str(a.path) and a.path.parent == tmp_path and a.path.name.startswith("sessions-")


def test_a_foreign_file_is_reported_and_rebuilt_never_mixed(tmp_path):
    ours = SessionStore(tmp_path, base_url=BASE, organization_id="org-a")
    theirs = SessionStore(tmp_path, base_url=BASE, organization_id="org-b")
    theirs.merge(sessions_frame(make_records("theirs", 5)))
    os.replace(theirs.path, ours.path)  # e.g. a file copied by hand
    with pytest.warns(CacheFileWarning, match="another API or organisation"):
        assert ours.load().empty
    with pytest.warns(CacheFileWarning):
        merged = ours.merge(sessions_frame(make_records("ours", 3)))
    assert sorted(merged.index) == ["ours-00000", "ours-00001", "ours-00002"]
    assert sorted(ours.load().index) == sorted(merged.index)  # rebuilt: no warning any more


def test_the_store_is_a_dataset_partitioned_by_start_date(store, fleet):
    frame = sessions_frame(fleet.sessions[:1500])
    store.merge(frame)
    days = sorted({str(t.date()) for t in frame.start_time.dropna()})
    assert store.partitions() == days and len(days) > 1
    for file in part_files(store):
        day = file.parent.name.removeprefix("start_date=")
        dates = pq.read_table(file, columns=["start_time"]).column("start_time").to_pandas().dt.date
        assert {str(d) for d in dates} == {day}  # each session in the folder of its start date
    assert len(part_files(store)) == len(days)  # one file per partition after a merge


def test_duckdb_reads_the_cache_directly(store, fleet):
    duckdb = pytest.importorskip("duckdb")
    frame = sessions_frame(fleet.sessions[:1500])
    store.merge(frame)
    # The query shown in the README.
    by_day = duckdb.sql(f"""
        SELECT start_date, count(*) AS sessions, count(*) FILTER (exit_status = 'ERROR') AS errors
        FROM read_parquet('{store.path}/*/*.parquet', hive_partitioning = true)
        GROUP BY start_date ORDER BY start_date""").df()
    expected = frame.groupby(frame.start_time.dt.strftime("%Y-%m-%d")).agg(
        sessions=("exit_status", "size"), errors=("exit_status", lambda s: int((s == "ERROR").sum())))
    assert [str(d)[:10] for d in by_day.start_date] == list(expected.index)
    assert by_day.sessions.tolist() == expected.sessions.tolist()
    assert by_day.errors.tolist() == expected.errors.tolist()


def test_a_merge_rewrites_only_the_partitions_it_touches(store, fleet):
    store.merge(sessions_frame(fleet.sessions[:1500]))
    before = {p.parent.name: (p.name, p.stat().st_mtime_ns) for p in part_files(store)}
    [newest] = fleet.sessions[:1]
    ended = dict(newest, endTime=newest["startTime"], exitStatus="NORMAL_EXIT", sessionLengthMs=0,
                 updatedAt="2027-01-01T00:00:00Z")
    store.merge(sessions_frame([ended]))
    after = {p.parent.name: (p.name, p.stat().st_mtime_ns) for p in part_files(store)}
    changed = {day for day in after if after[day] != before.get(day)}
    assert changed == {"start_date=" + str(pd.Timestamp(newest["startTime"]).date())}
    assert store.load().loc[newest["id"], "exit_status"] == "NORMAL_EXIT"


@pytest.mark.parametrize("content", [b"", b"not parquet at all", b"PAR1" + b"\0" * 100])
def test_a_corrupt_file_is_reported_and_rebuilt(store, content):
    store.merge(sessions_frame(make_records("x", 2)))
    assert store.covered_since() is False
    store.merge(sessions_frame(make_records("x", 2)), covered_since=None)
    [part] = part_files(store)
    part.write_bytes(content)
    with pytest.warns(CacheFileWarning, match="could not be read"):
        assert store.load().empty
    assert store.covered_since() is False  # rows were lost: the next refresh reads everything
    store.merge(sessions_frame(make_records("x", 2)))
    assert len(store.load()) == 2


def test_another_schema_version_is_reported_and_rebuilt(store):
    store.merge(sessions_frame(make_records("x", 2)))
    meta = json.loads((store.path / "_store.json").read_text())
    (store.path / "_store.json").write_text(json.dumps({**meta, "schema_version": "0"}))
    with pytest.warns(CacheFileWarning, match="schema version is '0'"):
        assert store.load().empty
    with pytest.warns(CacheFileWarning):
        store.merge(sessions_frame(make_records("y", 3)))
    assert sorted(store.load().index) == ["y-00000", "y-00001", "y-00002"]


def test_a_single_file_cache_of_an_earlier_version_is_migrated(store, fleet):
    frame = sessions_frame(fleet.sessions[:300])
    table = pa.Table.from_pandas(frame.drop(columns=["stale_active"]).reset_index(), preserve_index=False)
    store.directory.mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata({
        b"anam_notebooks.key": store.key.encode(), b"anam_notebooks.schema_version": b"1",
        b"anam_notebooks.covered_since": b"all"}), store.path.with_suffix(".parquet"))
    with pytest.warns(CacheFileWarning, match="single-file cache from an earlier version; its 300 sessions"):
        loaded = store.load()
    pd.testing.assert_frame_equal(loaded.sort_index(), frame.sort_index())
    assert store.covered_since() is None and not store.path.with_suffix(".parquet").exists()
    assert part_files(store)


def test_an_unreadable_single_file_cache_is_reported_and_rebuilt(store):
    store.directory.mkdir(parents=True)
    store.path.with_suffix(".parquet").write_bytes(b"not parquet")
    with pytest.warns(CacheFileWarning, match="earlier version, but it could not be read"):
        assert store.load().empty
    assert not store.path.with_suffix(".parquet").exists() and store.covered_since() is False


def test_a_file_from_before_new_columns_loads_with_old_data_kept(store, fleet):
    frame = sessions_frame(fleet.sessions[:200])
    store.merge(frame)
    for part in part_files(store):  # as an earlier version wrote them: no checksum in the name
        table = pq.read_table(part)
        older = table.drop_columns(["sdk_version", "engine_region", "engine_replicaset", "engine_pod",
                                    "duration"])
        pq.write_table(older.replace_schema_metadata(table.schema.metadata),
                       part.with_name(f"part-{uuid.uuid4().hex}.parquet"))
        part.unlink()
    loaded = store.load()
    assert list(loaded.columns) == list(frame.columns)
    assert loaded.sdk_version.isna().all()  # could not be known: null, not an error
    for column in ("engine_region", "engine_replicaset", "engine_pod", "duration", "exit_status",
                   "start_time", "persona_name"):
        assert loaded[column].sort_index().equals(frame[column].sort_index()), column


def test_a_writer_that_fails_midway_leaves_the_old_cache(store, monkeypatch):
    store.merge(sessions_frame(make_records("old", 10)))
    before = store.load()

    def broken_write(table, sink, **kwargs):
        sink.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        store.merge(sessions_frame(make_records("new", 10)))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.load(), before)
    assert temp_files(store) == []


KILLED_WRITER = """
import sys, time
import pyarrow.parquet as pq
from anam_notebooks import sessions_frame
from anam_notebooks.data.store import SessionStore

real_write = pq.write_table
def slow_write(table, sink, **kwargs):
    sink.write(b"PAR1 partial")
    sink.flush()
    print("writing", flush=True)
    time.sleep(60)
    real_write(table, sink, **kwargs)
pq.write_table = slow_write

store = SessionStore(sys.argv[1], base_url=sys.argv[2], organization_id=sys.argv[3])
store.merge(sessions_frame([{"id": "from-killed-writer", "organizationId": sys.argv[3]}]))
"""


def test_a_writer_killed_with_sigkill_leaves_the_old_cache_readable(store):
    store.merge(sessions_frame(make_records("old", 10)))
    before = store.load()
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(store.directory), BASE, ORG],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    pd.testing.assert_frame_equal(store.load(), before)
    # the lock died with the process; the next write goes through and sweeps the leftovers
    store.merge(sessions_frame(make_records("after", 1)))
    assert len(store.load()) == 11
    assert temp_files(store) == []


CONCURRENT_WRITER = """
import sys
from anam_notebooks import sessions_frame
from anam_notebooks.data.store import SessionStore

directory, base, org, prefix = sys.argv[1:5]
store = SessionStore(directory, base_url=base, organization_id=org)
for batch in range(12):
    records = [{"id": f"{prefix}-{batch}-{i}", "organizationId": org,
                "startTime": f"2026-04-20T10:{batch:02d}:{i:02d}Z"} for i in range(25)]
    store.merge(sessions_frame(records))
"""


@pytest.mark.slow
def test_two_processes_writing_through_the_lock_lose_nothing(store):
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(store.directory), BASE,
                                 ORG, prefix]) for prefix in ("left", "right")]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    ids = set(store.load().index)
    expected = {f"{p}-{b}-{i}" for p in ("left", "right") for b in range(12) for i in range(25)}
    assert ids == expected


def test_default_cache_dir_follows_the_platform_conventions(monkeypatch, tmp_path):
    monkeypatch.delenv("ANAM_NOTEBOOKS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_cache_dir() == tmp_path / "xdg" / "anam-notebooks"
    monkeypatch.setenv("ANAM_NOTEBOOKS_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_bad_store_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="base_url"):
        SessionStore(tmp_path, base_url="")
    with pytest.raises(ValueError, match="cache=3"):
        open_store(3, client=None)


# -- incremental refresh against the simulator --------------------------------------------------

@pytest.fixture
def live():
    """A private fleet (its records get mutated) behind a simulator and a client."""
    app = create_app(generate_fleet(seed=11, sessions=800, span="2d", end=END))
    return app.state.simulator, demo_client(app)


def full_fetch(client) -> pd.DataFrame:
    return fetch_sessions(client, progress=False)


@pytest.mark.parametrize("new_sessions", [0, 1, 99, 100, 150, 250])
def test_refresh_after_new_and_ended_sessions_equals_a_full_fetch(tmp_path, live, new_sessions):
    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    first = store.refresh(client)
    assert len(first) == 800
    was_active = list(first.index[first.is_active])
    assert was_active
    simulator.add_sessions(new_sessions)
    for session_id in was_active:
        simulator.end_session(session_id)
    simulator.reset_stats()
    refreshed = store.refresh(client)
    list_requests = simulator.stats["list"]
    assert list_requests <= math.ceil(new_sessions / 100) + 2
    pd.testing.assert_frame_equal(refreshed, full_fetch(client))
    pd.testing.assert_frame_equal(store.load(), refreshed)
    assert not refreshed.loc[was_active, "is_active"].any()


def test_a_long_new_head_is_read_in_full_whatever_the_page_budget(tmp_path, live, monkeypatch):
    import anam_notebooks.data.store as store_module

    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    store.refresh(client)
    monkeypatch.setattr(store_module, "HEAD_PAGES", 1)
    simulator.add_sessions(450)  # a long weekend without a refresh
    pd.testing.assert_frame_equal(store.refresh(client), full_fetch(client))


def test_refresh_rereads_active_sessions_that_the_head_does_not_reach(tmp_path, live):
    simulator, client = live
    deep = simulator.fleet.sessions[300]  # about 18 hours before the newest session
    deep.update(endTime=None, sessionLengthMs=None, exitStatus=None)  # still running, far down
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    assert store.refresh(client).loc[deep["id"], "is_active"]
    simulator.end_session(deep["id"], status="BRAND_NEW_STATUS")
    simulator.reset_stats()
    refreshed = store.refresh(client)
    assert simulator.stats["list"] <= 2 and simulator.stats["get"] == 1
    row = refreshed.loc[deep["id"]]
    assert not row.is_active and row.exit_status == "BRAND_NEW_STATUS"
    pd.testing.assert_frame_equal(refreshed, full_fetch(client))


def test_refresh_with_since_reads_back_only_as_far_as_needed(tmp_path, live):
    simulator, client = live
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    since = END - pd.Timedelta(hours=6)
    recent = store.refresh(client, since=since)
    first_requests = simulator.stats["list"]
    assert first_requests < 8  # 800 sessions are 8 pages; 6 hours of 2 days is far fewer
    assert (recent.start_time >= since).sum() == (full_fetch(client).start_time >= since).sum()
    assert store.covered_since() == pd.Timestamp(since)
    simulator.reset_stats()
    everything = store.refresh(client)  # reaches further back than the cache: reads it all
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
import anam_notebooks.data.store as store_module
from anam_notebooks import AnamClient, fetch_sessions
from anam_notebooks.simulator import DEMO_API_KEY

store_module.CHECKPOINT_ROWS = 300  # checkpoints every 3 pages instead of every 200
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
    reader = subprocess.Popen([sys.executable, "-c", RESUMABLE_READER, url, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        while checkpointed(tmp_path) < 1500 and reader.poll() is None:
            time.sleep(0.01)
    finally:
        reader.send_signal(signal.SIGKILL)
        reader.wait(timeout=30)
    assert reader.returncode == -signal.SIGKILL, "the reader finished before it could be killed"
    stored = checkpointed(tmp_path)
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
    import anam_notebooks.data.store as store_module

    simulator, client = live
    monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 100)
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    store.refresh(client)
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
    first = store.refresh(client)
    assert first.is_active.sum() >= 250
    for sid in list(first.index[first.is_active])[:200]:
        simulator.end_session(sid)
    simulator.reset_stats()
    refreshed = store.refresh(client)
    # 250 active sessions sit on the first 3 pages: 3 pages and a check, never 250 GETs.
    assert simulator.stats["get"] == 0 and simulator.stats["list"] <= 3 + 2
    pd.testing.assert_frame_equal(refreshed, full_fetch(client))


@pytest.mark.slow
def test_a_refresh_spends_bounded_gets_on_stragglers_and_flags_stale_sessions(tmp_path, monkeypatch):
    import anam_notebooks.data.store as store_module

    monkeypatch.setattr(store_module, "HEAD_PAGES", 2)  # as if the list were 50x longer
    monkeypatch.setattr(store_module, "STRAGGLERS", 5)
    simulator, client, recent, old = busy_fleet(active_head=5, deep_recent=40, deep_old=12)
    store = SessionStore(tmp_path, base_url=client.base_url, organization_id="org")
    first = store.refresh(client)
    assert first.loc[old, "stale_active"].all() and first.stale_active.sum() == len(old)
    assert not first.loc[recent, "stale_active"].any() and first.loc[recent, "is_active"].all()
    for sid in [*recent, *old]:
        simulator.end_session(sid)  # the server now knows they ended
    for _ in range(12):
        simulator.reset_stats()
        frame = store.refresh(client)
        assert simulator.stats["get"] <= 5 and simulator.stats["list"] <= 2 + 2
    # Five single GETs a refresh, least recently updated first, reach every live straggler...
    assert not frame.loc[recent, "is_active"].any()
    # ...while sessions "active" for more than a day are never asked for again, and say so.
    assert frame.loc[old, "is_active"].all() and frame.loc[old, "stale_active"].all()
    assert store.last_refresh["stale_active"] == len(old)
