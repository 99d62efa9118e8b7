"""The session dataset: the same analyses and figures counted by DuckDB and by a local Spark give
exactly the pandas answers on planted simulator fleets; slices, single sessions, opening by
cache directory, dataset directory, client or Ibis table; foreign or corrupt parts become data
notes and the rest is still read."""

from __future__ import annotations

import os
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import anam_notebooks as an
from anam_notebooks import analysis, plots, sessions_frame
from anam_notebooks.analysis.outcomes import unit_bucket_counts
from anam_notebooks.data.store import CacheFileWarning, SessionStore
from anam_notebooks.simulator import create_app, demo_client, generate_fleet

END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
BASE = "http://127.0.0.1:9"
LEVELS = ["engine_pod", "engine_replicaset", "sdk_version", "tts_provider", "persona_name", "browser"]


def stored(tmp_path: Path, seed: int, incidents=True, sessions: int = 6000,
           org: str = "org-1") -> tuple[SessionStore, pd.DataFrame]:
    """A store holding a planted simulator fleet, and its frame as the store loads it."""
    fleet = generate_fleet(seed=seed, sessions=sessions, span="4d", end=END, incidents=incidents)
    store = SessionStore(tmp_path / "cache", base_url=BASE, organization_id=org)
    store.merge(sessions_frame(fleet.sessions))
    return store, store.load()


def assert_same_answers(frame: pd.DataFrame, ds, *, tz_cases=(None, "Asia/Kolkata")) -> None:
    """Every count-based analysis and figure gives the same result on both inputs."""
    for by in ("engine_pod", ["engine_region", "engine_version"], "sdk_version", "tts_provider"):
        pd.testing.assert_frame_equal(analysis.failure_rates(frame, by), analysis.failure_rates(ds, by))
    pd.testing.assert_frame_equal(analysis.what_differs(frame), analysis.what_differs(ds))
    window = dict(start="2026-04-18T00:00Z", end="2026-04-19T06:00Z")
    pd.testing.assert_frame_equal(analysis.what_differs(frame, **window), analysis.what_differs(ds, **window))
    for split in (dict(split="2026-04-19T00:00Z"),
                  dict(split="engine_version", before=sorted(frame.engine_version.dropna().unique())[0],
                       after=sorted(frame.engine_version.dropna().unique())[-1])):
        a, b = analysis.exit_status_shift(frame, **split), analysis.exit_status_shift(ds, **split)
        pd.testing.assert_frame_equal(a, b)
        assert a.attrs == b.attrs
    for tz in tz_cases:
        for by in ("engine_pod", "tts_provider"):
            assert plots.host_health(frame, by=by, tz=tz).to_json() == plots.host_health(ds, by=by, tz=tz).to_json()
        assert plots.exit_status_over_time(frame, freq="3h", tz=tz).to_json() == \
            plots.exit_status_over_time(ds, freq="3h", tz=tz).to_json()
    # The ranking: same rows, same p- and q-values, same windows and sentences.
    ranked, ranked_ds = analysis.rank_suspects(frame), analysis.rank_suspects(ds)
    pd.testing.assert_frame_equal(ranked, ranked_ds)
    assert ranked.attrs == ranked_ds.attrs
    step = pd.Timedelta("1h")
    a, b = unit_bucket_counts(frame, LEVELS, step), unit_bucket_counts(ds, LEVELS, step)
    assert a.buckets.equals(b.buckets)
    np.testing.assert_array_equal(a.sessions, b.sessions)
    np.testing.assert_array_equal(a.failures, b.failures)
    for level in LEVELS:
        x, y = a.levels[level], b.levels[level]
        assert list(x.units) == list(y.units)
        np.testing.assert_array_equal(x.sessions, y.sessions)
        np.testing.assert_array_equal(x.failures, y.failures)


@pytest.mark.parametrize("seed,incidents", [(5, True), (8, {"provider"}), (13, False)])
def test_duckdb_counts_give_the_pandas_answers_on_planted_fleets(tmp_path, seed, incidents):
    store, frame = stored(tmp_path, seed, incidents)
    ds = an.session_dataset(tmp_path / "cache")
    assert len(ds) == len(frame)
    assert_same_answers(frame, ds)
    if incidents is True:  # the planted provider outage is what stands out, on both inputs
        rates = analysis.failure_rates(ds, "tts_provider")
        outage = next(i for i in generate_fleet(seed=seed, sessions=6000, span="4d", end=END).incidents
                      if i.kind == "provider")
        assert rates["rate"].idxmax() == outage.value
        ranked = analysis.rank_suspects(ds)
        assert ranked["flagged"].any() and outage.value in set(ranked.loc[ranked["flagged"], "unit"])


def test_the_unit_bucket_counts_add_up_to_the_fleet(tmp_path):
    store, frame = stored(tmp_path, 5)
    counts = unit_bucket_counts(an.session_dataset(store.path), ["engine_region"], pd.Timedelta("6h"))
    region = counts.levels["engine_region"]
    ended = frame[~frame.is_active]
    assert counts.sessions.sum() == len(ended) and region.sessions.sum() == ended.engine_region.notna().sum()
    assert counts.failures.sum() == analysis.is_failure(ended.exit_status).sum()
    assert (region.failures <= region.sessions).all() and region.sessions.shape == (len(region.units),
                                                                                     len(counts.buckets))


def test_to_frame_slices_with_the_store_dtypes(tmp_path):
    store, frame = stored(tmp_path, 5)
    ds = an.session_dataset(store.path)
    whole = ds.to_frame()
    pd.testing.assert_frame_equal(whole, frame)
    since, until = "2026-04-18T00:00Z", "2026-04-18T12:00Z"
    part = ds.to_frame(since=since, until=until, columns=["exit_status", "engine_pod"],
                       where={"engine_region": ["eu", "us"]})
    expected = frame[(frame.start_time >= since) & (frame.start_time <= until)
                     & frame.engine_region.isin(["eu", "us"])]
    assert list(part.columns) == ["exit_status", "engine_pod"]
    assert list(part.index) == list(expected.index)
    assert [str(d) for d in part.dtypes] == [str(d) for d in frame[["exit_status", "engine_pod"]].dtypes]
    pd.testing.assert_series_equal(part["exit_status"].astype(object), expected["exit_status"].astype(object))
    row = ds.session(frame.index[10])
    pd.testing.assert_series_equal(row, frame.iloc[10])
    with pytest.raises(KeyError, match="no session with id 'nope'"):
        ds.session("nope")
    with pytest.raises(ValueError, match="unknown column"):
        ds.to_frame(columns=["engine_colour"])
    with pytest.raises(ValueError, match="unknown column 'colour'"):
        ds.to_frame(where={"colour": "red"})


def test_a_dataset_opens_by_cache_directory_dataset_directory_client_or_table(tmp_path, monkeypatch):
    app = create_app(generate_fleet(seed=3, sessions=400, span="1d", end=END))
    client = demo_client(app)
    summary = an.sync_sessions(client, cache=tmp_path / "cache", progress=False)
    assert summary.stored == 400 and summary.covered_since is None
    by_cache = an.session_dataset(tmp_path / "cache")
    by_dir = an.session_dataset(summary.path)
    by_client = an.session_dataset(tmp_path / "cache", client=client)
    assert len(by_cache) == len(by_dir) == len(by_client) == 400
    assert by_cache.path == summary.path
    by_table = an.session_dataset(by_dir.table)
    pd.testing.assert_frame_equal(analysis.failure_rates(by_table), analysis.failure_rates(by_dir))
    monkeypatch.setenv("ANAM_NOTEBOOKS_CACHE", str(tmp_path / "cache"))
    assert len(an.session_dataset()) == len(an.session_dataset(True)) == 400  # the per-user cache
    # Another organisation's dataset in the same cache: the directory alone is ambiguous.
    SessionStore(tmp_path / "cache", base_url=BASE, organization_id="other").merge(
        sessions_frame(generate_fleet(seed=4, sessions=50, span="1d", end=END).sessions))
    with pytest.raises(ValueError, match="holds 2 session datasets.*pass client="):
        an.session_dataset(tmp_path / "cache")
    assert len(an.session_dataset(tmp_path / "cache", client=client)) == 400
    with pytest.raises(ValueError, match="holds no session dataset: run `anam-notebooks sync"):
        an.session_dataset(tmp_path / "empty")
    with pytest.raises(TypeError, match="where=3"):
        an.session_dataset(3)
    with pytest.raises(TypeError, match="SessionDataset"):
        analysis.failure_rates([1, 2, 3])


def test_a_foreign_or_corrupt_part_is_a_data_note_and_the_rest_is_read(tmp_path):
    store, frame = stored(tmp_path, 5, sessions=2000)
    other, _ = stored(tmp_path / "other", 6, sessions=300, org="org-2")
    dates = store.partitions()
    corrupt = store.path / f"start_date={dates[0]}" / "part-corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    foreign = store.path / f"start_date={dates[1]}" / "part-foreign.parquet"
    shutil.copy(next(other.path.glob("start_date=*/part-*.parquet")), foreign)
    with pytest.warns(CacheFileWarning) as caught:
        ds = an.session_dataset(store.path)
    notes = " | ".join(str(w.message) for w in caught)
    assert "part-corrupt.parquet" in notes and "could not be read" in notes
    assert "part-foreign.parquet" in notes and "another API or organisation" in notes
    assert len(ds.notes) == 2
    assert len(ds) == len(frame)  # every good session, nothing of the other organisation
    pd.testing.assert_frame_equal(analysis.failure_rates(ds), analysis.failure_rates(frame))
    assert corrupt.exists()  # reading never deletes: the store's next write repairs it


def test_two_copies_of_a_session_count_once_the_most_updated_winning(tmp_path):
    store, frame = stored(tmp_path, 5, sessions=1000)
    victim = frame[~frame.is_active].index[0]
    newer = frame.loc[[victim]].copy()
    newer["exit_status"] = pd.Categorical(["ERROR"])
    newer["updated_at"] = newer["updated_at"] + pd.Timedelta(minutes=5)
    store.append(newer)  # as a killed first read leaves it: a second part in that partition
    assert len(list(store.path.glob(f"start_date={newer.start_time.dt.date.iloc[0]}/part-*"))) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheFileWarning)  # nothing to report: a crash's copy is no fault
        ds = an.session_dataset(store.path)
    assert len(ds) == len(frame)
    assert ds.session(victim).exit_status == "ERROR"
    pd.testing.assert_frame_equal(analysis.failure_rates(ds), analysis.failure_rates(store.load()))


# -- a second engine: PySpark in local mode ------------------------------------------------

def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def spark():
    """A local Spark (2 threads) on Debian's Java; a clear skip without Java except under CI."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        message = ("Java is not installed: `make test` installs Debian's default-jre-headless "
                   "for the PySpark tests")
        if _under_ci():
            pytest.fail(message + "; CI never skips them")
        pytest.skip(message)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("anam-notebooks-tests")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4").config("spark.driver.memory", "1g")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_counts_give_the_pandas_answers_on_a_planted_fleet(tmp_path, spark):
    import ibis

    store, frame = stored(tmp_path, 5, sessions=3000)
    table = ibis.pyspark.connect(spark).read_parquet(str(store.path))  # Spark's own Parquet reader
    ds = an.session_dataset(table)
    assert len(ds) == len(frame)
    assert_same_answers(frame, ds, tz_cases=(None,))
    part = ds.to_frame(since="2026-04-19T00:00Z", columns=["exit_status", "tts_provider"])
    expected = frame[frame.start_time >= "2026-04-19T00:00Z"][["exit_status", "tts_provider"]]
    pd.testing.assert_frame_equal(part, expected)


def test_an_ibis_table_without_the_contract_is_refused_clearly(tmp_path):
    import ibis

    table = ibis.memtable(pd.DataFrame({"id": ["a"], "start_time": [pd.Timestamp("2026-04-20", tz="UTC")]}))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['exit_status', 'is_active'\]"):
        an.session_dataset(table)
    assert pq  # the store's parts are plain Parquet (read above by Spark's reader)
