"""The Parquet session store: a hive-partitioned dataset (read by DuckDB too), round trips,
foreign/corrupt files, the single-file cache of earlier versions, schema evolution, atomic
writes (a killed writer), two writing processes. Filling it from the API: test_sync.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anam_notebooks import sessions_frame
from anam_notebooks.data.store import CacheFileWarning, SessionStore, default_cache_dir
from anam_notebooks.sync import open_store

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


def test_finishing_a_first_read_merges_parts_in_runs_of_bounded_size(store, fleet, monkeypatch):
    import anam_notebooks.data.store as store_module

    frame = sessions_frame(fleet.sessions)
    touched: set[str] = set()
    for chunk in range(0, len(frame), 100):  # as a first read appends: many small parts
        touched |= store.append(frame.iloc[chunk:chunk + 100], checkpoint=[(0, chunk)], stored=chunk)
    busiest = max(touched, key=lambda d: len(list(store.path.glob(f"start_date={d}/part-*"))))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in store.path.glob(f"start_date={busiest}/part-*"))
    monkeypatch.setattr(store_module, "COMPACT_ROWS", rows // 2)  # as if that day were very busy
    store.finish(touched, None)
    files = list(store.path.glob(f"start_date={busiest}/part-*"))
    assert 2 <= len(files) <= 4  # merged, but never more than COMPACT_ROWS rows at once
    assert all(pq.ParquetFile(p).metadata.num_rows <= rows // 2 for p in files)
    assert store.checkpoint() is None and store.covered_since() is None
    pd.testing.assert_frame_equal(store.load().sort_index(), frame.sort_index())


def test_finishing_keeps_the_most_updated_copy_of_an_id_and_holds_one_chunk_at_a_time(store, fleet, monkeypatch):
    """A first read killed between a part and its checkpoint writes those sessions twice; the
    merge keeps each id once (its most updated copy) and writes row groups of a bounded chunk."""
    import anam_notebooks.data.store as store_module

    frame = sessions_frame(fleet.sessions)
    touched: set[str] = set()
    for chunk in range(0, len(frame), 100):
        touched |= store.append(frame.iloc[chunk:chunk + 100])
    older = frame.iloc[:300].copy()
    older["updated_at"] = older["updated_at"] - pd.Timedelta("1h")  # the same sessions, read earlier
    touched |= store.append(older)
    newer = frame.iloc[300:400].copy()
    newer["updated_at"] = newer["updated_at"] + pd.Timedelta("1h")
    touched |= store.append(newer)
    monkeypatch.setattr(store_module, "COMPACT_CHUNK", 150)
    store.finish(touched, None)
    assert store.stored_sessions() == len(frame)  # every id once in the files themselves
    expected = frame.copy()
    expected.loc[newer.index, "updated_at"] = newer["updated_at"]
    pd.testing.assert_frame_equal(store.load().sort_index(), expected.sort_index())
    groups = [pq.ParquetFile(p).metadata.row_group(g).num_rows for p in store.path.glob("*/part-*.parquet")
              for g in range(pq.ParquetFile(p).metadata.num_row_groups)]
    assert max(groups) <= 150 + 100 and len(groups) > len(touched)  # a chunk and at most one more part
