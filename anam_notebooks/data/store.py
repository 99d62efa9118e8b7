"""A local cache of one organisation's sessions: a hive-partitioned Parquet dataset that
DuckDB, Polars or Spark can read directly. Files only: filling it from the API is `sync.py`'s.

Layout (`SessionStore.path`, one per API base URL and organisation, named by a hash)::

    sessions-<hash>/
        _store.json                      key, schema version, coverage mark
        _backfill.json                   only while a first read is unfinished
        start_date=2026-04-20/part-<n>.parquet
        start_date=unknown/part-<n>.parquet   sessions without a start time
        quarantine/                      parts that failed a check, kept for a look (not read)

Each part file also carries the key and schema version in its metadata, and is named by the
SHA-256 of its bytes (`part-<64 hex>.parquet`): name and content arrive in one rename, so the
checksum is written atomically with the part, and any byte changed later shows. A part that
fails a check (checksum, unreadable, foreign key or schema version, a column of the wrong
type) is never mixed in: it is moved to `quarantine/` (named in one warning) and a refresh
reads its start date again from the API in the same call (`quarantine_damaged`, used by
`sync.refresh_store`). Parts written before checksums existed (`part-<32 hex>.parquet`) are
verified by structure alone (every check but the checksum); they gain a checksum when their
partition is next rewritten. Every file is written atomically (temp file in the same folder,
fsync, os.replace) under a file lock, so two kernels can share the folder and a killed writer
leaves the old files readable. A row is keyed by session id; where a crash leaves two copies,
loading keeps the most updated one.

A first read appends chunks as new part files and checkpoints as it goes (`_backfill.json`
lists the list positions already stored), so an interrupted read resumes where it stopped;
`finish` compacts the partitions it wrote (one part at a time) and records the coverage. A refresh writes only the
date partitions it touches (`write`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from .columns import CATEGORY, SESSION_COLUMNS, STRING, TIMEDELTA, UTC_TIME
from .files import atomic_write as _atomic_write
from .sessions import (
    concat_sessions,
    empty_sessions_frame,
    frame_from_arrow,
    keep_latest,
    newest_first,
    stale_active,
)

__all__ = ["SCHEMA_VERSION", "CacheFileWarning", "SessionStore", "cache_directory", "default_cache_dir"]

logger = logging.getLogger("anam_notebooks")

SCHEMA_VERSION = "2"  # 1: one Parquet file per cache; 2: a dataset partitioned by start date
CACHE_DIR_ENV = "ANAM_NOTEBOOKS_CACHE"
_APP_DIR = "anam-notebooks"
_META_KEY = b"anam_notebooks.key"
_META_VERSION = b"anam_notebooks.schema_version"
_META_COVERED = b"anam_notebooks.covered_since"  # (schema 1) every session started at/after this is held
_ALL_HISTORY = "all"
_STORE_FILE = "_store.json"
_CHECKPOINT_FILE = "_backfill.json"
_PARTITION = "start_date"
UNKNOWN_DATE = "unknown"  # the partition of sessions without a start time
_DERIVED = ("stale_active",)  # recomputed on load, never stored
_QUARANTINE = "quarantine"
_CHECKSUMMED = re.compile(r"part-([0-9a-f]{64})\.parquet")  # the name is the SHA-256 of the bytes
PER_PAGE = 100  # the list page size checkpoint positions are counted in
COMPACT_ROWS = 50_000  # the most rows one compaction merges into one file (a busier day gets several)
COMPACT_CHUNK = 20_000  # the most rows a compaction holds at once (one row group of the file)


class CacheFileWarning(UserWarning):
    """A cache file was damaged, unreadable or belonged to another key/schema; it is set aside
    and its sessions are read again."""


def _arrow_type(dtype: Any) -> pa.DataType:
    if dtype == CATEGORY:
        return pa.dictionary(pa.int32(), pa.string())
    if dtype is STRING:
        return pa.string()
    if dtype == UTC_TIME:
        return pa.timestamp("us", tz="UTC")
    if dtype == TIMEDELTA:
        return pa.duration("us")
    if isinstance(dtype, pd.Int64Dtype):
        return pa.int64()
    return pa.bool_()  # bool and nullable boolean


ARROW_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False)] +
                         [pa.field(name, _arrow_type(dtype)) for name, dtype in SESSION_COLUMNS.items()
                          if name not in _DERIVED])
_ARROW_TYPES = {f.name: f.type for f in ARROW_SCHEMA}


def default_cache_dir() -> Path:
    """The per-user cache folder: $ANAM_NOTEBOOKS_CACHE, else the platform's cache location
    ($XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / _APP_DIR / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / _APP_DIR
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / _APP_DIR


Covered: TypeAlias = pd.Timestamp | None | bool
Spans: TypeAlias = list[tuple[int, int]]  # tail positions of the session list, counted from the oldest


class SessionStore:
    """The cached sessions of one organisation at one API base URL, in `directory`.

    `load()` gives the typed frame; `merge(frame)` adds sessions (most updated wins);
    `append`, `write` and `finish` are what a sync (`sync_sessions`) fills it with.

    `path` is the dataset directory (hive-partitioned by `start_date`), readable by any engine::

        duckdb.sql(f"SELECT * FROM read_parquet('{store.path}/*/*.parquet', hive_partitioning=true)")
        polars.scan_parquet(f"{store.path}/*/*.parquet", hive_partitioning=True)

    Engines type `start_date` as a date, or as text when some sessions have no start time
    (their folder is `start_date=unknown`). Columns are the frame's, minus the derived
    `stale_active`; the id is the column `id`. Read it while no refresh is writing, or copy it.

    Parameters
    ----------
    directory : str or path
        The folder holding the dataset (one per API base URL and organisation).
    base_url : str
        The API base URL the sessions came from (part of the cache key).
    organization_id : str, optional
        The organisation the sessions belong to (part of the cache key).
    lock_timeout : float
        Seconds to wait for another kernel's write to finish before giving up.

    Raises
    ------
    ValueError
        `base_url` is empty or not a string, or `organization_id` is not a string.
    """

    def __init__(self, directory: str | os.PathLike[str], *, base_url: str,
                 organization_id: str | None = None, lock_timeout: float = 120.0) -> None:
        if not isinstance(base_url, str) or not base_url:
            raise ValueError(f"base_url={base_url!r} is not valid: expected the API base URL, "
                             "e.g. 'https://api.anam.ai'")
        if organization_id is not None and not isinstance(organization_id, str):
            raise ValueError(f"organization_id={organization_id!r} is not valid: expected a string or None")
        self.directory = Path(directory).expanduser()
        self.base_url = base_url.rstrip("/")
        self.organization_id = organization_id
        self.key = f"{self.base_url}\n{organization_id or ''}"
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:24]
        self.path = self.directory / f"sessions-{digest}"
        self._legacy = self.directory / f"sessions-{digest}.parquet"  # schema 1: a single file
        self._lock = FileLock(str(self.directory / f"sessions-{digest}.lock"), timeout=lock_timeout)
        self._verified: dict[Path, tuple[int, int]] = {}  # checksummed parts whose bytes matched

    def __repr__(self) -> str:
        return (f"SessionStore({str(self.directory)!r}, base_url={self.base_url!r}, "
                f"organization_id={self.organization_id!r})")

    # -- reading --------------------------------------------------------------------------
    def load(self) -> pd.DataFrame:
        """The cached sessions, newest first (an empty typed frame when there is no cache).

        Returns
        -------
        pandas.DataFrame
            The sessions frame, with `stale_active` derived on load.

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            return self._load()

    def covered_since(self) -> Covered:
        """Since when the cache holds every session.

        Returns
        -------
        pandas.Timestamp, None or False
            A UTC time, None for all history, or False when nothing is cached yet.

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            return self._covered()

    def partitions(self) -> list[str]:
        """The start dates (YYYY-MM-DD, or 'unknown') that have data, oldest first.

        Returns
        -------
        list of str
            One entry per ``start_date=...`` folder holding at least one part file.

        Raises
        ------
        OSError
            The dataset folder cannot be listed.
        """
        return sorted(p.name.split("=", 1)[1] for p in self.path.glob(f"{_PARTITION}=*") if p.is_dir()
                      and any(p.glob("part-*.parquet")))

    def _locked(self) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self._lock

    def _covered(self) -> Covered:
        self._migrate()
        meta = self._meta()
        if meta is None:
            return False
        covered = meta.get("covered_since")
        if covered == _ALL_HISTORY:
            return None
        if not covered:
            return False
        return cast(pd.Timestamp, pd.Timestamp(covered))

    def _meta(self) -> dict[str, Any] | None:
        """The dataset's `_store.json`, or None (with a warning) when it is missing or foreign."""
        file = self.path / _STORE_FILE
        if not self.path.exists():
            return None
        problem = None
        try:
            meta = json.loads(file.read_text("utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            problem = f"its {_STORE_FILE} could not be read ({type(exc).__name__}: {exc})"
        else:
            problem = self._foreign(meta.get("key"), meta.get("schema_version"))
            covered = meta.get("covered_since")
            if problem is None and covered not in (None, "", _ALL_HISTORY):
                try:
                    pd.Timestamp(covered)
                except (ValueError, TypeError):
                    problem = f"its coverage mark {covered!r} is not a time"
        if problem is not None:
            self._warn(problem)
            return None
        return cast(dict[str, Any], meta)

    def _foreign(self, key: Any, version: Any) -> str | None:
        if key != self.key:
            shown = str(key).replace(chr(10), " / ")
            return f"it belongs to another API or organisation ({shown!r})"
        if version != SCHEMA_VERSION:
            return f"its schema version is {version!r}, this version reads {SCHEMA_VERSION!r}"
        return None

    def _warn(self, problem: str, where: Path | None = None) -> None:
        warnings.warn(f"session cache {str(where or self.path)!r}: {problem}; it will be rebuilt",
                      CacheFileWarning, stacklevel=4)

    def _parts(self, partition: str | None = None) -> list[Path]:
        pattern = f"{_PARTITION}={partition if partition is not None else '*'}/part-*.parquet"
        return sorted(self.path.glob(pattern))

    def _read_parts(self, files: Iterable[Path], columns: list[str] | None = None, *,
                    then: str = "the next refresh reads them again") -> tuple[list[pa.Table], bool]:
        """The tables of `files` (only `columns` when given), and whether all passed
        `_check_part`. A part that fails is moved to quarantine (one warning names every such
        part), never mixed in."""
        tables, failed = [], []
        for file in files:
            table, problem = self._check_part(file, columns=columns)
            if problem is None:
                assert table is not None
                tables.append(table)
            else:
                failed.append((file, problem))
        if failed:
            self._quarantine(failed, then)
        return tables, not failed

    def _check_part(self, file: Path, *, read: bool = True, columns: list[str] | None = None,
                    threads: bool = True) -> tuple[pa.Table | None, str | None]:
        """(table, None) for a sound part, else (None, what is wrong with it): its bytes against
        the checksum in its name, then readable, ours (key, schema version), an 'id', and every
        known column of the type this version writes. `read=False` checks without building
        the table where the checksum vouches for the rest (the footer is still checked)."""
        try:
            data = file.read_bytes()
            if not data:
                return None, "it could not be read (0 bytes)"
            named = _CHECKSUMMED.fullmatch(file.name)
            stat = file.stat()
            if named is not None and self._verified.get(file) != (stat.st_size, stat.st_mtime_ns):
                if hashlib.sha256(data).hexdigest() != named.group(1):
                    return None, "it could not be read intact (its bytes do not match the checksum in its name)"
                self._verified[file] = (stat.st_size, stat.st_mtime_ns)
            parquet = pq.ParquetFile(pa.BufferReader(data))
            schema = parquet.schema_arrow
            metadata = schema.metadata or {}
            problem = self._foreign(metadata.get(_META_KEY, b"").decode("utf-8", "replace"),
                                    metadata.get(_META_VERSION, b"").decode("utf-8", "replace"))
            if problem is None and "id" not in schema.names:
                problem = "it has no 'id' column"
            for field in schema:
                expected = _ARROW_TYPES.get(field.name)
                if problem is None and expected is not None and field.type != expected:
                    problem = f"its column {field.name!r} has type {field.type}, expected {expected}"
            if problem is not None:
                return None, problem
            if not read and named is not None:
                return pa.table({}), None
            wanted = [n for n in schema.names if n in _ARROW_TYPES and (columns is None or n in columns)]
            table = parquet.read(columns=wanted, use_threads=threads)
            return table.replace_schema_metadata(None), None
        except (OSError, pa.ArrowException, ValueError, TypeError) as exc:
            return None, f"it could not be read ({type(exc).__name__}: {exc})"

    def _quarantine(self, failed: list[tuple[Path, str]], then: str) -> None:
        """Move failed parts to `quarantine/` (outside every part glob) with one warning."""
        folder = self.path / _QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        moved = []
        for file, problem in failed:
            target = folder / f"{file.parent.name}.{file.name}.bad"
            try:
                os.replace(file, target)
            except OSError:
                file.unlink(missing_ok=True)
                target = Path("(deleted: it could not be moved)")
            self._verified.pop(file, None)
            moved.append(f"{str(file)!r} ({problem}) -> {str(target)!r}")
        warnings.warn(f"session cache {str(self.path)!r}: {len(moved)} part file(s) failed a check and "
                      f"were set aside, never mixed in: {'; '.join(moved)}; {then}",
                      CacheFileWarning, stacklevel=4)

    def quarantine_damaged(self) -> list[str]:
        """Check every part, quarantine those that fail, and return their partitions (start
        dates, or 'unknown') for a filler to read again; the coverage mark is dropped
        meanwhile, so a crash before they are read again still leads to a full read.

        Returns
        -------
        list of str
            The partitions that lost a part (empty when every part is sound).

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            if not self.path.exists() or self._meta() is None:
                return []
            failed = []
            for file in self._parts():
                _, problem = self._check_part(file, read=False)
                if problem is not None:
                    failed.append((file, problem))
            if not failed:
                return []
            self._quarantine(failed, "their start dates are read again from the API now")
            self._write_meta(False)
        return sorted({file.parent.name.split("=", 1)[1] for file, _ in failed})

    def _load(self) -> pd.DataFrame:
        self._migrate()
        if self._meta() is None:
            return empty_sessions_frame()
        tables, whole = self._read_parts(self._parts())
        if not whole:
            self._write_meta(False)  # some rows are gone: the next refresh reads everything again
        return _frame_of(tables)

    # -- migration from the single-file cache ----------------------------------------------
    def _migrate(self) -> None:
        """A schema-1 single-file cache becomes the dataset (same sessions, same coverage);
        an unreadable one is reported and rebuilt by the next refresh."""
        if not self._legacy.exists():
            return
        if self.path.exists():
            self._legacy.unlink(missing_ok=True)
            return
        frame: pd.DataFrame | None = None
        covered: Covered = False
        problem: str | None = None
        try:
            parquet = pq.ParquetFile(self._legacy)
            metadata = parquet.schema_arrow.metadata or {}
            key = metadata.get(_META_KEY, b"").decode("utf-8", "replace")
            covered_text = metadata.get(_META_COVERED, b"").decode("utf-8", "replace")
            problem = self._foreign(key, SCHEMA_VERSION) if key != self.key else None
            if problem is None and metadata.get(_META_VERSION) != b"1":
                problem = f"its schema version is {metadata.get(_META_VERSION)!r}, expected a single-file cache"
            if problem is None:
                frame = frame_from_arrow(parquet.read())
                covered = None if covered_text == _ALL_HISTORY else (
                    pd.Timestamp(covered_text) if covered_text else False)
        except (OSError, pa.ArrowException, ValueError, TypeError) as exc:
            problem = f"it could not be read ({type(exc).__name__}: {exc})"
        if problem is not None or frame is None:
            self._warn(f"a single-file cache from an earlier version, but {problem}", self._legacy)
        else:
            self._replace_partitions(frame, covered=covered)
            warnings.warn(f"session cache {str(self._legacy)!r}: a single-file cache from an earlier "
                          f"version; its {len(frame)} sessions now live in the partitioned dataset "
                          f"{str(self.path)!r}", CacheFileWarning, stacklevel=4)
        self._legacy.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------------------------
    def merge(self, frame: pd.DataFrame, *, covered_since: pd.Timestamp | None | bool = False
              ) -> pd.DataFrame:
        """Add `frame`'s sessions to the cache (same id: the most updated row wins) and return
        the whole cache. Only the start-date partitions of `frame`'s rows are rewritten.

        Parameters
        ----------
        frame : pandas.DataFrame
            Sessions to add, in the sessions-frame shape.
        covered_since : Timestamp, None or False
            Records a completed full read back to this time (None: all history); False keeps
            the old mark.

        Returns
        -------
        pandas.DataFrame
            The whole cache after the merge, newest first.

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            covered = self._covered()
            if covered_since is not False:
                covered = _wider(covered, covered_since)
            self._replace_partitions(frame, covered=covered)
            return self._load()

    def clear(self) -> None:
        """Delete the cached dataset (and any single-file cache from an earlier version).

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            shutil.rmtree(self.path, ignore_errors=True)
            self._legacy.unlink(missing_ok=True)

    def _start_fresh_if_foreign(self) -> None:
        """Before a write (lock held): drop a foreign dataset and a killed writer's temp files."""
        if self.path.exists() and self._meta() is None:
            shutil.rmtree(self.path, ignore_errors=True)
        for leftover in self.path.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    def _replace_partitions(self, frame: pd.DataFrame, *, covered: Covered) -> None:
        """Merge `frame` into the partitions its rows belong to, one atomic file each."""
        self._start_fresh_if_foreign()
        if not (self.path / _STORE_FILE).exists():
            self._write_meta(False)
        for date, rows in _by_partition(frame):
            old = self._parts(date)
            tables, whole = self._read_parts(old)
            if not whole:
                covered = False  # rows were lost: the next refresh reads everything again
            merged = keep_latest(concat_sessions([_frame_of(tables), rows])) if tables else keep_latest(rows)
            written = self._write_part(date, merged)
            for file in old:
                if file != written:
                    file.unlink(missing_ok=True)
        self._write_meta(covered)

    def _append_partitions(self, frame: pd.DataFrame) -> set[str]:
        """A checkpoint: write `frame`'s rows as new part files (nothing is rewritten)."""
        self._start_fresh_if_foreign()
        if not (self.path / _STORE_FILE).exists():
            self._write_meta(False)
        touched = set()
        for date, rows in _by_partition(frame):
            self._write_part(date, rows)
            touched.add(date)
        return touched

    def _compact(self, dates: Iterable[str]) -> None:
        """Fewer, larger files again after a backfill appended many: a partition's parts are
        merged in runs of at most COMPACT_ROWS rows (one file for an ordinary day, a few for a
        busier one; a copy of an id in another run is left to loading, which keeps the most
        updated one).

        A run is never held whole: its ids and update times alone decide which copy of an id
        stays (the most updated, as `keep_latest`), then the parts are read one at a time and
        written on as row groups of at most COMPACT_CHUNK rows, so memory follows one chunk of
        records (plus a run's ids), however busy a day was."""
        for date in dates:
            for old in _runs(self._parts(date), COMPACT_ROWS):
                if len(old) < 2:
                    continue
                sound, keys, failed = [], [], []
                for file in old:
                    table, problem = self._check_part(file, columns=["id", "start_time", "updated_at"],
                                                      threads=False)
                    if problem is None and table is not None:
                        sound.append(file)
                        keys.append(table)
                    else:
                        failed.append((file, problem or "it could not be read"))
                if failed:
                    self._quarantine(failed, "the next refresh reads them again")
                    self._write_meta(False)  # rows were lost: the next refresh reads everything again
                if len(sound) < 2:
                    continue
                order = sorted(range(len(sound)), key=lambda i: _newest_start(keys[i]), reverse=True)
                kept = _latest_copies([keys[i] for i in order])
                keys.clear()
                written = self._write_tables(date, self._kept_rows([sound[i] for i in order], kept))
                for file in sound:
                    if file != written:
                        file.unlink(missing_ok=True)
                        self._verified.pop(file, None)

    def _kept_rows(self, files: list[Path], kept: list[np.ndarray]) -> Iterator[pa.Table]:
        """The rows `kept` (a mask per file) of `files`, newest first in chunks of at most
        COMPACT_CHUNK rows, in the store's schema; one file is read at a time."""
        chunk: list[pa.Table] = []
        rows = 0
        for file, mask in zip(files, kept):
            table, problem = self._check_part(file, threads=False)  # small: threads only add memory
            if problem is not None or table is None:  # checked moments ago, under the lock
                raise OSError(f"session cache part {str(file)!r} changed while it was merged: {problem}")
            chunk.append(_conformed(table.filter(pa.array(mask))))
            rows += int(mask.sum())
            if rows >= COMPACT_CHUNK:
                yield _newest_first_table(chunk)
                chunk, rows = [], 0
        if chunk:
            yield _newest_first_table(chunk)

    def _write_part(self, date: str, frame: pd.DataFrame) -> Path:
        """Write `frame` as a new part of partition `date`, named by its checksum; its path."""
        table = pa.Table.from_pandas(frame.reset_index(), schema=ARROW_SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata(self._part_metadata())
        return self._write_file(date, lambda sink: pq.write_table(table, sink, compression="zstd"))

    def _write_tables(self, date: str, tables: Iterable[pa.Table]) -> Path:
        """Write `tables` (store schema) as the row groups of one new part of partition `date`,
        taking one table at a time; its path."""
        schema = ARROW_SCHEMA.with_metadata(self._part_metadata())

        def write(sink: BinaryIO) -> None:
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table.replace_schema_metadata(schema.metadata))

        return self._write_file(date, write)

    def _part_metadata(self) -> dict[bytes, bytes]:
        return {_META_KEY: self.key.encode("utf-8"), _META_VERSION: SCHEMA_VERSION.encode()}

    def _write_file(self, date: str, write: Callable[[BinaryIO], object]) -> Path:
        """A new part of partition `date` written by `write(sink)`, named by its checksum."""
        folder = self.path / f"{_PARTITION}={date}"
        written = _atomic_write(folder / "part-{sha256}.parquet", write, name_by_checksum=True)
        stat = written.stat()
        self._verified[written] = (stat.st_size, stat.st_mtime_ns)
        return written

    def _write_meta(self, covered: Covered) -> None:
        mark = _ALL_HISTORY if covered is None else (
            covered.isoformat() if isinstance(covered, pd.Timestamp) else "")
        body = {"key": self.key, "schema_version": SCHEMA_VERSION, "covered_since": mark,
                "refreshed_at": datetime.now(UTC).isoformat(), "partitioned_by": _PARTITION}
        data = json.dumps(body, indent=1).encode()
        _atomic_write(self.path / _STORE_FILE, lambda sink: sink.write(data))

    # -- the backfill checkpoint -----------------------------------------------------------
    def _checkpoint(self) -> Spans | None:
        """Positions of the list (counted from the oldest session) already stored by an
        unfinished first read, or None."""
        try:
            body = json.loads((self.path / _CHECKPOINT_FILE).read_text("utf-8"))
            if body.get("key") != self.key or body.get("per_page") != PER_PAGE:
                return None
            return [(int(lo), int(hi)) for lo, hi in body["spans"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def _write_checkpoint(self, spans: Spans, stored: int) -> None:
        body = {"key": self.key, "per_page": PER_PAGE, "spans": spans,
                "stored": stored, "written_at": datetime.now(UTC).isoformat()}
        data = json.dumps(body).encode()
        _atomic_write(self.path / _CHECKPOINT_FILE, lambda sink: sink.write(data))

    # -- what a filler (see `anam_notebooks.sync`) asks of the files -----------------------
    def write(self, frame: pd.DataFrame) -> None:
        """`merge` without reading the whole cache back: only `frame`'s partitions are touched.

        Parameters
        ----------
        frame : pandas.DataFrame
            Sessions to add, in the sessions-frame shape (same id: the most updated row wins).

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            self._replace_partitions(frame, covered=self._covered())

    def append(self, frame: pd.DataFrame, *, checkpoint: Spans | None = None, stored: int = 0) -> set[str]:
        """Store `frame`'s rows as new part files (nothing is rewritten), then record
        `checkpoint`, the list positions stored so far by an unfinished first read.

        Parameters
        ----------
        frame : pandas.DataFrame
            A chunk of sessions, in the sessions-frame shape.
        checkpoint : list of (int, int), optional
            Tail positions of the list whose sessions are now all stored.
        stored : int
            How many sessions those positions hold (shown to whoever watches the checkpoint).

        Returns
        -------
        set of str
            The start-date partitions written to (to `finish` later).

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            touched = self._append_partitions(frame)
            if checkpoint is not None:
                self._write_checkpoint(checkpoint, stored)
        return touched

    def checkpoint(self) -> Spans | None:
        """The list positions an unfinished first read stored (see `append`), or None.

        Returns
        -------
        list of (int, int) or None
            Tail positions, counted from the oldest session of the list.

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            return self._checkpoint() if self.path.exists() else None

    def finish(self, partitions: Iterable[str], covered_since: pd.Timestamp | None) -> None:
        """End a first read: few files per partition in `partitions` again, the coverage mark
        widened to `covered_since` (None: all history), the checkpoint removed.

        Parameters
        ----------
        partitions : iterable of str
            Start dates written by `append`.
        covered_since : Timestamp or None
            Every session started at/after it is now stored; None for all history.

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        with self._locked():
            self._compact(partitions)
            self._write_meta(_wider(self._covered(), covered_since))
            (self.path / _CHECKPOINT_FILE).unlink(missing_ok=True)

    def read_columns(self, columns: Iterable[str]) -> pd.DataFrame:
        """A few columns of every stored session, newest first (most updated copy of an id),
        with `stale_active` derived: what a refresh needs without loading the whole frame.

        Parameters
        ----------
        columns : iterable of str
            Stored columns; start_time, updated_at and is_active are always read.

        Returns
        -------
        pandas.DataFrame
            Indexed by session id.

        Raises
        ------
        filelock.Timeout
            Another process held the cache's lock for longer than `lock_timeout`.
        """
        wanted = list(dict.fromkeys(["id", "start_time", "updated_at", "is_active", *columns]))
        with self._locked():
            self._migrate()
            tables = self._read_parts(self._parts(), columns=wanted)[0] if self._meta() is not None else []
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return empty_sessions_frame()[[c for c in wanted if c != "id"] + ["stale_active"]]
        table = pa.concat_tables(tables, promote_options="default")
        tables.clear()
        frame = table.drop_columns(["id"]).to_pandas(types_mapper={
            pa.timestamp("us", tz="UTC"): UTC_TIME}.get)
        frame.index = pd.Index(table.column("id").combine_chunks(), dtype=STRING, name="id")
        frame = newest_first(keep_latest(frame))
        frame["stale_active"] = stale_active(frame)
        return frame

    def stored_sessions(self) -> int:
        """Rows in the part files (from their footers; a crash's duplicate copies count twice).

        Returns
        -------
        int
            The number of stored rows.

        Raises
        ------
        OSError
            The dataset folder cannot be listed.
        """
        total = 0
        for part in self._parts():
            try:
                total += pq.ParquetFile(part).metadata.num_rows
            except (OSError, pa.ArrowException, ValueError):
                continue
        return total


def _frame_of(tables: list[pa.Table]) -> pd.DataFrame:
    """Part tables → the typed frame, newest first (duplicate ids: the most updated wins)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_sessions_frame()
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    tables.clear()
    return newest_first(frame_from_arrow(table))


def _newest_start(keys: pa.Table) -> int:
    """The newest start time in a part (µs since the epoch; the smallest integer when none)."""
    newest = pc.max(keys.column("start_time").cast(pa.int64())).as_py() if "start_time" in keys.column_names else None
    return newest if newest is not None else np.iinfo(np.int64).min


def _latest_copies(keys: list[pa.Table]) -> list[np.ndarray]:
    """For parts given by their id and updated_at columns (in this order), a mask per part of
    the rows to keep: every id once, its most updated copy (ties: the later), as `keep_latest`."""
    sizes = [t.num_rows for t in keys]
    ids = pa.chunked_array([t.column("id") for t in keys], type=pa.string())
    if pc.count_distinct(ids).as_py() == len(ids):
        return [np.ones(n, dtype=bool) for n in sizes]
    stamp = _ARROW_TYPES["updated_at"]
    updated = pa.chunked_array([t.column("updated_at") if "updated_at" in t.column_names
                                else pa.nulls(t.num_rows, stamp) for t in keys], type=stamp)
    order = pd.DataFrame({"id": ids.to_numpy(), "updated": updated.to_numpy(),
                          "position": np.arange(len(ids))})
    order = order.sort_values(["updated", "position"], na_position="first", kind="stable")
    keep = np.zeros(len(ids), dtype=bool)
    keep[order.drop_duplicates("id", keep="last")["position"].to_numpy()] = True
    return np.split(keep, np.cumsum(sizes)[:-1])


def _conformed(table: pa.Table) -> pa.Table:
    """A part's table in the store's schema: its columns in order, absent ones as nulls."""
    names = set(table.column_names)
    return pa.Table.from_arrays([table.column(f.name) if f.name in names else pa.nulls(table.num_rows, f.type)
                                 for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def _newest_first_table(tables: list[pa.Table]) -> pa.Table:
    """`tables` as one, newest start first (unknown start last), ties by id: as `newest_first`."""
    return pa.concat_tables(tables).sort_by([("start_time", "descending"), ("id", "descending")])  # nulls last


def _runs(parts: list[Path], limit: int) -> Iterator[list[Path]]:
    """`parts` in consecutive runs of at most `limit` rows (from the footers; a part that cannot
    be read counts as empty here and is reported when the run is read)."""
    run: list[Path] = []
    rows = 0
    for part in parts:
        try:
            size = pq.ParquetFile(part).metadata.num_rows
        except (OSError, pa.ArrowException, ValueError):
            size = 0
        if run and rows + size > limit:
            yield run
            run, rows = [], 0
        run.append(part)
        rows += size
    if run:
        yield run


def _by_partition(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(start date, rows) for each start date in `frame`; no start time → 'unknown'."""
    if frame.empty:
        return
    start = frame["start_time"].to_numpy(dtype="datetime64[us]")
    days = start.astype("datetime64[D]")
    known = ~np.isnat(days)
    for day in np.unique(days[known]):
        yield str(day), frame[days == day]
    if not known.all():
        yield UNKNOWN_DATE, frame[~known]


def cache_directory(cache: bool | str | os.PathLike[str]) -> Path:
    """The folder a `cache=` argument names: True is `default_cache_dir()`, else the path."""
    if cache is True:
        return default_cache_dir()
    if isinstance(cache, (str, os.PathLike)) and str(cache):
        return Path(cache)
    raise ValueError(f"cache={cache!r} is not valid: expected None/False (no cache), "
                     "True (the per-user cache directory) or a directory path")


def _wider(a: pd.Timestamp | None | bool, b: pd.Timestamp | None) -> pd.Timestamp | None:
    if a is False:
        return b
    if a is None or b is None:
        return None
    return min(a, b)
