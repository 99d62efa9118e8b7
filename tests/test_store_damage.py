"""A cache that checks itself: a 20,000-session cache whose largest part is damaged on disk in
every way we know of; the very next `fetch_sessions` returns exactly the API's sessions, sets
the part aside in `quarantine/` and says so in one warning. Real HTTP to the simulator
in-process."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anam_notebooks import fetch_sessions
from anam_notebooks.data.store import CacheFileWarning, SessionStore
from anam_notebooks.simulator import create_app, demo_client, generate_fleet

END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def api():
    """20,000 sessions over a week behind the simulator, the API's own answer, and a cache
    directory filled by one fetch (copied for each test)."""
    app = create_app(generate_fleet(seed=21, sessions=20_000, span="7d", end=END))
    client = demo_client(app)
    expected = fetch_sessions(client, progress=False)
    return client, expected


@pytest.fixture(scope="module")
def filled(api, tmp_path_factory) -> Path:
    client, expected = api
    folder = tmp_path_factory.mktemp("filled")
    pd.testing.assert_frame_equal(fetch_sessions(client, cache=folder, progress=False), expected)
    return folder


def largest_part(folder: Path) -> Path:
    return max(folder.glob("sessions-*/start_date=*/part-*.parquet"), key=lambda p: p.stat().st_size)


def flip(offset_share: float):
    def damage(part: Path) -> None:
        data = bytearray(part.read_bytes())
        at = int(len(data) * offset_share)
        data[at:at + 64] = bytes(b ^ 0xFF for b in data[at:at + 64])
        part.write_bytes(bytes(data))
    return damage


def foreign_schema(part: Path) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"name": ["a", "b"], "value": [1.5, 2.5]}), buffer)
    part.write_bytes(buffer.getvalue())


def wrong_types(part: Path) -> Path:
    """Our key, version and columns, but `start_time` as text: a part that passes its checksum
    (it is named by its own bytes) and must be caught by its column types."""
    table = pq.read_table(part)
    at = table.schema.get_field_index("start_time")
    table = table.set_column(at, "start_time", table.column("start_time").cast(pa.string()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    renamed = part.with_name(f"part-{hashlib.sha256(data).hexdigest()}.parquet")
    renamed.write_bytes(data)
    part.unlink()
    return renamed


DAMAGE = {
    "zero-bytes": lambda part: part.write_bytes(b""),
    "garbage": lambda part: part.write_bytes(os.urandom(part.stat().st_size)),
    "truncated": lambda part: part.write_bytes(part.read_bytes()[:part.stat().st_size // 2]),
    "foreign-schema": foreign_schema,
    "wrong-column-types": wrong_types,
    **{f"flipped-at-{share:.0%}": flip(share) for share in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.99]},
}
QUICK = {"zero-bytes", "garbage", "truncated", "foreign-schema", "wrong-column-types", "flipped-at-20%"}


@pytest.mark.parametrize("kind", [k if k in QUICK else pytest.param(k, marks=pytest.mark.slow) for k in DAMAGE])
def test_a_damaged_part_is_quarantined_and_read_again_in_the_same_call(api, filled, tmp_path, kind):
    client, expected = api
    folder = tmp_path / "cache"
    shutil.copytree(filled, folder)
    part = largest_part(folder)
    renamed = DAMAGE[kind](part)
    damaged = renamed if isinstance(renamed, Path) else part
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fetch_sessions(client, cache=folder, progress=False)
    pd.testing.assert_frame_equal(got, expected)  # ids, exit statuses, times: every column
    notes = [str(w.message) for w in caught if issubclass(w.category, CacheFileWarning)]
    assert len(notes) == 1, notes
    assert damaged.name in notes[0] and "quarantine" in notes[0]
    [quarantined] = folder.glob("sessions-*/quarantine/*")
    assert damaged.name in quarantined.name and not damaged.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheFileWarning)  # healed: nothing more to report
        pd.testing.assert_frame_equal(fetch_sessions(client, cache=folder, progress=False), expected)


def test_quarantined_parts_stay_out_of_every_reader(api, filled, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    client, expected = api
    folder = tmp_path / "cache"
    shutil.copytree(filled, folder)
    flip(0.5)(largest_part(folder))
    with pytest.warns(CacheFileWarning):
        fetch_sessions(client, cache=folder, progress=False)
    [dataset] = [p for p in folder.glob("sessions-*") if p.is_dir()]
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{dataset}/*/*.parquet', "
                       "hive_partitioning = true)").fetchall()[0][0]
    assert count == len(expected)


def test_every_part_is_named_by_the_checksum_of_its_bytes(filled):
    parts = list(filled.glob("sessions-*/start_date=*/part-*.parquet"))
    assert parts
    for part in parts:
        assert part.name == f"part-{hashlib.sha256(part.read_bytes()).hexdigest()}.parquet"


def test_a_store_without_a_client_sets_a_damaged_part_aside_and_forgets_its_coverage(api, filled, tmp_path):
    client, expected = api
    folder = tmp_path / "cache"
    shutil.copytree(filled, folder)
    largest_part(folder).write_bytes(b"not parquet")
    store = SessionStore(folder, base_url=client.base_url, organization_id=expected.organization_id.iloc[0])
    assert store.covered_since() is None
    with pytest.warns(CacheFileWarning, match="the next refresh reads them again"):
        frame = store.load()
    assert 0 < len(frame) < len(expected) and store.covered_since() is False


def test_a_transcript_part_with_changed_bytes_is_skipped_and_its_sessions_asked_again(tmp_path):
    import anam_notebooks as an

    app = create_app(generate_fleet(seed=11, sessions=300, span="1d", end=END))
    client = demo_client(app)
    sessions = fetch_sessions(client, progress=False)
    ended = sessions[~sessions["is_active"]]
    first = an.fetch_transcripts(client, ended, sample=20, cache=tmp_path, progress=False)
    [part] = tmp_path.glob("transcripts-*/part-*.parquet")
    assert part.name.endswith(f"-{hashlib.sha256(part.read_bytes()).hexdigest()}.parquet")
    flip(0.5)(part)
    app.state.simulator.stats.clear()
    with pytest.warns(CacheFileWarning, match="do not match the checksum") as caught:
        again = an.fetch_transcripts(client, ended, sample=20, cache=tmp_path, progress=False)
    assert part.name in " ".join(str(w.message) for w in caught)
    assert app.state.simulator.stats["total"] == 20  # every session of the part asked again
    pd.testing.assert_frame_equal(first, again)
