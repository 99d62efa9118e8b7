"""A local cache of one organisation's sessions: a hive-partitioned Parquet dataset,
refreshed incrementally, that DuckDB, Polars or Spark can read directly.

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
reads its start date again from the API in the same call. Parts written before checksums
existed (`part-<32 hex>.parquet`) are verified by structure alone (every check but the
checksum); they gain a checksum when their partition is next rewritten. Every file is
written atomically (temp file in the same folder, fsync, os.replace) under a file lock, so two
kernels can share the folder and a killed writer leaves the old files readable. A row is
keyed by session id; where a crash leaves two copies, loading keeps the most updated one.

A first read checkpoints as it goes (`_backfill.json` lists the list positions already
stored), so an interrupted backfill resumes where it stopped. A refresh reads the head of the
list far enough to cover the sessions still active last time, re-reads a bounded number of
stragglers one by one, and rewrites only the date partitions it touched. Sessions "active"
for longer than any session lasts are flagged `stale_active` and no longer re-read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from ..api.errors import AnamAPIError, AnamConnectionError, PaginationError
from ..api.paging import Coverage
from ..api.source import SessionSource
from .columns import CATEGORY, SESSION_COLUMNS, STRING, TIMEDELTA, UTC_TIME
from .sessions import (
    concat_sessions,
    empty_sessions_frame,
    frame_from_arrow,
    keep_latest,
    newest_first,
    sessions_frame,
)

__all__ = ["SCHEMA_VERSION", "CacheFileWarning", "SessionStore", "default_cache_dir", "open_store"]

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
_UNKNOWN_DATE = "unknown"
_DERIVED = ("stale_active",)  # recomputed on load, never stored
_QUARANTINE = "quarantine"
_CHECKSUMMED = re.compile(r"part-([0-9a-f]{64})\.parquet")  # the name is the SHA-256 of the bytes
PER_PAGE = 100
CHECKPOINT_ROWS = 20_000  # sessions read between two checkpoints of a first read
HEAD_PAGES = 30  # list pages a refresh may read to cover sessions that were active
STRAGGLERS = 20  # single GETs a refresh may spend on active sessions the head did not cover


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


class SessionStore:
    """The cached sessions of one organisation at one API base URL, in `directory`.

    `load()` gives the typed frame; `merge(frame)` adds sessions (most updated wins);
    `refresh(client)` brings the cache up to date with as few requests as it can.

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
        self.last_refresh: dict[str, int] = {}  # what the latest refresh did, for the curious
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

    def _read_parts(self, files: Iterable[Path], *, then: str = "the next refresh reads them "
                    "again") -> tuple[list[pa.Table], bool]:
        """The tables of `files`, and whether all passed `_check_part`. A part that fails is
        moved to quarantine (one warning names every such part), never mixed in."""
        tables, failed = [], []
        for file in files:
            table, problem = self._check_part(file)
            if problem is None:
                assert table is not None
                tables.append(table)
            else:
                failed.append((file, problem))
        if failed:
            self._quarantine(failed, then)
        return tables, not failed

    def _check_part(self, file: Path, *, read: bool = True) -> tuple[pa.Table | None, str | None]:
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
            table = parquet.read(columns=[n for n in schema.names if n in _ARROW_TYPES])
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

    def _quarantine_damaged(self) -> list[str]:
        """(Lock held.) Check every part, quarantine those that fail, and return their
        partitions (start dates, or 'unknown'); the coverage mark is dropped meanwhile, so a
        crash before they are read again still leads to a full read."""
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
        """One file per partition again, after a backfill appended many."""
        for date in dates:
            old = self._parts(date)
            if len(old) < 2:
                continue
            tables, whole = self._read_parts(old)
            if not whole:
                self._write_meta(False)  # rows were lost: the next refresh reads everything again
            written = self._write_part(date, keep_latest(_frame_of(tables)))
            for file in old:
                if file != written:
                    file.unlink(missing_ok=True)

    def _write_part(self, date: str, frame: pd.DataFrame) -> Path:
        """Write `frame` as a new part of partition `date`, named by its checksum; its path."""
        table = pa.Table.from_pandas(frame.reset_index(), schema=ARROW_SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({
            _META_KEY: self.key.encode("utf-8"), _META_VERSION: SCHEMA_VERSION.encode()})
        folder = self.path / f"{_PARTITION}={date}"
        written = _atomic_write(folder / f"part-{uuid.uuid4().hex}.parquet",
                                lambda sink: pq.write_table(table, sink, compression="zstd"),
                                name_by_checksum=True)
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
    def _checkpoint(self) -> Coverage | None:
        """Positions of the list (counted from the oldest session) already stored by an
        unfinished full read, or None."""
        try:
            body = json.loads((self.path / _CHECKPOINT_FILE).read_text("utf-8"))
            if body.get("key") != self.key or body.get("per_page") != PER_PAGE:
                return None
            return Coverage([(int(lo), int(hi)) for lo, hi in body["spans"]])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def _write_checkpoint(self, done: Coverage) -> None:
        body = {"key": self.key, "per_page": PER_PAGE, "spans": done.spans,
                "stored": len(done), "written_at": datetime.now(UTC).isoformat()}
        data = json.dumps(body).encode()
        _atomic_write(self.path / _CHECKPOINT_FILE, lambda sink: sink.write(data))

    # -- refreshing -----------------------------------------------------------------------
    def refresh(self, client: SessionSource, *, since: datetime | pd.Timestamp | None = None,
                progress: bool = False) -> pd.DataFrame:
        """Bring the cache up to date and return it, newest first.

        Parameters
        ----------
        client : SessionSource
            The client to read with (its `iter_session_pages` and `get_session`); a redacting
            client is read through its raw source, so the cache never holds masked records
            (mask what this returns with ``client.redaction``, as `fetch_sessions` does).
        since : datetime or Timestamp, optional
            How far back the cache must reach; None means all history. When the cache does
            not reach that far yet, the list is read back that far (a full read checkpoints
            as it goes and resumes after an interruption).
        progress : bool
            Show a progress bar.

        Returns
        -------
        pandas.DataFrame
            The whole cache, newest first.

        Raises
        ------
        PaginationError
            When list pages fail after retries; what was read is stored first, and
            `.frame` holds the whole cache including it.
        """
        if client.redaction is not None:   # the cache holds raw records, whoever asks
            client = client.redaction.raw
        since_ts = None if since is None else _utc(since)
        with self._locked():
            covered = self._covered()
            damaged = self._quarantine_damaged() if covered is not False else []
            resume = self._checkpoint() if since_ts is None and self.path.exists() else None
        if damaged:
            self._refetch_quarantined(client, damaged, covered, progress)
        if covered is False or _reaches_further(since_ts, covered):
            self._backfill(client, since_ts, resume, progress)
            if resume is None:
                return self.load()
            # Sessions stored by the interrupted run may have ended since: a cheap refresh.
        return self._refresh_head(client, progress)

    def _refetch_quarantined(self, client: SessionSource, partitions: list[str], covered: Covered,
                             progress: bool) -> None:
        """Read the quarantined partitions' sessions again: the list back to the oldest of
        their start dates (all of it for 'unknown'), then the coverage mark as it was."""
        dates = [pd.Timestamp(p, tz="UTC") for p in partitions if p != _UNKNOWN_DATE]
        since = None if _UNKNOWN_DATE in partitions or not dates else min(dates)
        self._backfill(client, since, None, progress)
        with self._locked():
            self._write_meta(_wider(covered, since))

    def _backfill(self, client: SessionSource, since: pd.Timestamp | None, resume: Coverage | None,
                  progress: bool) -> None:
        """Read the list back to `since` (None: all), storing a checkpoint every
        CHECKPOINT_ROWS sessions; `resume` skips the positions an earlier run stored."""
        done = Coverage(resume.spans) if resume is not None else Coverage()
        touched: set[str] = set()
        pending: list[dict[str, Any]] = []
        spans: list[tuple[int, int]] = []

        def flush() -> None:
            frame = sessions_frame(pending)
            pending.clear()
            with self._locked():
                touched.update(self._append_partitions(frame))
                if since is None:  # only a full read can be resumed by position
                    for lo, hi in spans:
                        done.add(lo, hi)
                    self._write_checkpoint(done)
            spans.clear()

        if resume is not None:
            logger.info("resuming a first read of the session list: %d sessions were stored already",
                        len(resume))
        batches = client.iter_session_pages(per_page=PER_PAGE, resume=resume,
                                            since=None if since is None else since.to_pydatetime())
        try:
            for batch in _with_progress(batches, progress):
                pending.extend(batch)
                if batch.span is not None:
                    spans.append(batch.span)
                if len(pending) >= CHECKPOINT_ROWS:
                    flush()
        except PaginationError as exc:
            flush()
            exc.frame = self.load()
            raise
        flush()
        with self._locked():
            self._compact(touched)
            self._write_meta(_wider(self._covered(), since))
            (self.path / _CHECKPOINT_FILE).unlink(missing_ok=True)

    def _refresh_head(self, client: SessionSource, progress: bool) -> pd.DataFrame:
        """Read the head of the list until it covers the sessions that were active (at most
        HEAD_PAGES pages), re-read at most STRAGGLERS others one by one, skip stale ones."""
        stored = self.load()  # newest first: a row's rank is about its place in the list
        active = stored["is_active"].to_numpy(dtype=bool)
        stale = stored["stale_active"].to_numpy(dtype=bool)
        live = stored[active & ~stale][["start_time", "updated_at"]]
        # The head joins the stored sessions at the newest of them: only those need looking up.
        head = slice(0, (HEAD_PAGES + STRAGGLERS + 10) * PER_PAGE)
        ended = set(stored.index[head][~active[head]])
        newest = stored["start_time"].max()
        stale_count = int(stale.sum())
        live_pages = np.flatnonzero(active & ~stale) // PER_PAGE + 1
        del stored, active, stale  # the merge below loads the cache again: never hold two
        depth = _head_depth(live_pages)
        by_pages = live.iloc[:int(np.searchsorted(live_pages, depth, side="right"))]
        oldest_live = by_pages["start_time"].min() if len(by_pages) else pd.NaT
        since = newest if pd.isna(oldest_live) else min(newest, oldest_live)
        pending = set(by_pages.index)
        state = {"after_join": 0, "joined": False}

        def stop(record: Mapping[str, Any]) -> bool:
            """Past the stored head and then every active session, or HEAD_PAGES past the
            stored head (new sessions are always read in full, however many arrived)."""
            rid = record.get("id")
            pending.discard(rid)
            state["joined"] = state["joined"] or rid in ended
            if not state["joined"]:
                return False
            state["after_join"] += 1
            return not pending or state["after_join"] >= HEAD_PAGES * PER_PAGE

        # `since` also adds the client's newest-first check: if the order does not hold it
        # reads every page instead of trusting the stop record.
        records = (r for batch in client.iter_session_pages(
            per_page=PER_PAGE, stop=stop, since=None if pd.isna(since) else since.to_pydatetime())
            for r in batch)
        try:
            fresh = sessions_frame(_with_progress(records, progress, unit=" sessions"))
        except PaginationError as exc:
            exc.frame = self.merge(exc.frame if exc.frame is not None else empty_sessions_frame())
            raise
        missed = live[~live.index.isin(fresh.index)]
        # Least recently updated first: those re-read and still running move to the back.
        chosen = list(missed.sort_values("updated_at", na_position="first").index[:STRAGGLERS])
        updated = sessions_frame(self._reread(client, chosen))
        self.last_refresh = {"head_sessions": len(fresh), "rereads": len(chosen),
                             "deferred": len(missed) - len(chosen), "stale_active": stale_count}
        if len(missed) > len(chosen):
            logger.info("%d sessions still marked active were not re-read this time (at most %d per "
                        "refresh); later refreshes re-read them", len(missed) - len(chosen), STRAGGLERS)
        if stale_count:
            logger.info("%d sessions have been 'active' for longer than any session lasts; they are "
                        "flagged stale_active and no longer re-read", stale_count)
        return self.merge(concat_sessions([fresh, updated]))

    @staticmethod
    def _reread(client: SessionSource, session_ids: Iterable[str]) -> list[dict[str, Any]]:
        records, failed = [], []
        for sid in session_ids:
            try:
                records.append(client.get_session(sid))
            except (AnamAPIError, AnamConnectionError) as exc:
                failed.append(f"{sid} ({type(exc).__name__})")
        if failed:
            warnings.warn(f"could not re-read {len(failed)} session(s) that were active: "
                          f"{', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}; "
                          "their cached rows are kept and retried next refresh",
                          CacheFileWarning, stacklevel=3)
        return records


def _head_depth(pages: np.ndarray) -> int:
    """How many head pages to read, given the page each active session was on (ascending):
    the depth d that costs least, d list pages plus one GET per active session deeper than d."""
    best, best_cost = 1, 1 + int((pages > 1).sum())
    for d in np.unique(pages):
        d = int(d)
        if d > HEAD_PAGES:
            break
        cost = d + int((pages > d).sum())
        if cost < best_cost:
            best, best_cost = d, cost
    return best


def _frame_of(tables: list[pa.Table]) -> pd.DataFrame:
    """Part tables → the typed frame, newest first (duplicate ids: the most updated wins)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_sessions_frame()
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    tables.clear()
    return newest_first(frame_from_arrow(table))


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
        yield _UNKNOWN_DATE, frame[~known]


def _with_progress(items: Iterable[Any], show: bool, unit: str = " sessions") -> Iterator[Any]:
    """Items passed through; a tqdm bar counts sessions (a batch counts its length)."""
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm
    with tqdm(desc="Fetching sessions", unit=unit) as bar:
        for item in items:
            bar.update(len(item) if isinstance(item, list) else 1)
            yield item


def _atomic_write(target: Path, write: Any, *, name_by_checksum: bool = False) -> Path:
    """Write `target` via a temp file in its folder, fsync and os.replace: a writer that dies
    midway leaves the old file (or none) in place, never half a file. With `name_by_checksum`
    the file is named `part-<SHA-256 of its bytes>.parquet` instead (one rename brings name
    and content). Returns the path written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(".*.tmp"):  # left by a killed writer (we hold the lock)
        leftover.unlink(missing_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        if name_by_checksum:
            with open(temp, "rb") as written:
                target = target.with_name(f"part-{hashlib.file_digest(written, 'sha256').hexdigest()}.parquet")
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def cache_directory(cache: bool | str | os.PathLike[str]) -> Path:
    """The folder a `cache=` argument names: True is `default_cache_dir()`, else the path."""
    if cache is True:
        return default_cache_dir()
    if isinstance(cache, (str, os.PathLike)) and str(cache):
        return Path(cache)
    raise ValueError(f"cache={cache!r} is not valid: expected None/False (no cache), "
                     "True (the per-user cache directory) or a directory path")


def open_store(cache: bool | str | os.PathLike[str], client: SessionSource) -> SessionStore:
    """The store for `client`'s API and organisation: `cache` True means default_cache_dir(),
    otherwise it is the directory. The organisation is read from the newest session."""
    directory = cache_directory(cache)
    page = client.list_sessions(page=1, per_page=1)
    data = page.get("data") if isinstance(page, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    organization = first.get("organizationId")
    return SessionStore(directory, base_url=client.base_url,
                        organization_id=organization if isinstance(organization, str) else None)


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _reaches_further(since: pd.Timestamp | None, covered: pd.Timestamp | None) -> bool:
    """Does a read back to `since` go beyond what the cache already covers?"""
    if covered is None:
        return False
    return since is None or since < covered


def _wider(a: pd.Timestamp | None | bool, b: pd.Timestamp | None) -> pd.Timestamp | None:
    if a is False:
        return b
    if a is None or b is None:
        return None
    return min(a, b)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (not possible, and not needed, on Windows)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
