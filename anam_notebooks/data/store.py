"""A local Parquet cache of one organisation's sessions, refreshed incrementally.

One file per (API base URL, organisation), named by a hash of that key, which is also
recorded in the file's metadata with a schema version: a corrupt or foreign file is reported
and rebuilt, never mixed in. Writes are atomic (temp file in the same folder, fsync,
os.replace) and serialised by a file lock, so two kernels can share a cache directory.
A refresh reads only the head of the list, down to the first session already stored as
ended, and re-reads sessions that were still active last time.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from ..api.errors import AnamAPIError, AnamConnectionError
from .columns import CATEGORY, SESSION_COLUMNS, STRING, TIMEDELTA, UTC_TIME
from .progress import iterate_with_progress
from .sessions import (
    concat_sessions,
    empty_sessions_frame,
    frame_from_arrow,
    keep_latest,
    newest_first,
    sessions_frame,
)

__all__ = ["SCHEMA_VERSION", "CacheFileWarning", "SessionStore", "default_cache_dir", "open_store"]

SCHEMA_VERSION = "1"
CACHE_DIR_ENV = "ANAM_NOTEBOOKS_CACHE"
_APP_DIR = "anam-notebooks"
_META_KEY = b"anam_notebooks.key"
_META_VERSION = b"anam_notebooks.schema_version"
_META_COVERED = b"anam_notebooks.covered_since"  # every session started at/after this is held
_META_REFRESHED = b"anam_notebooks.refreshed_at"
_ALL_HISTORY = "all"


class CacheFileWarning(UserWarning):
    """A cache file was unreadable or belonged to another key/schema; it will be rebuilt."""


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
                         [pa.field(name, _arrow_type(dtype)) for name, dtype in SESSION_COLUMNS.items()])


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


class SessionStore:
    """The cached sessions of one organisation at one API base URL, in `directory`.

    `load()` gives the typed frame; `merge(frame)` adds sessions (most updated wins);
    `refresh(client)` brings the cache up to date with as few list requests as it can.
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
        self.path = self.directory / f"sessions-{digest}.parquet"
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout)

    def __repr__(self) -> str:
        return (f"SessionStore({str(self.directory)!r}, base_url={self.base_url!r}, "
                f"organization_id={self.organization_id!r})")

    # -- reading --------------------------------------------------------------------------
    def load(self) -> pd.DataFrame:
        """The cached sessions, newest first (an empty typed frame when there is no cache)."""
        return self._read()[0]

    def covered_since(self) -> pd.Timestamp | None | bool:
        """Since when the cache holds every session: a UTC time, None for all history,
        or False when nothing is cached yet."""
        return self._read()[1]

    def _read(self) -> tuple[pd.DataFrame, pd.Timestamp | None | bool]:
        if not self.path.exists():
            return empty_sessions_frame(), False
        try:
            parquet = pq.ParquetFile(self.path)
            metadata = parquet.schema_arrow.metadata or {}
            problem = self._foreign(metadata, parquet.schema_arrow.names)
            if problem is None:
                frame = frame_from_arrow(parquet.read())
        except (OSError, pa.ArrowException, ValueError, TypeError) as exc:
            problem = f"it could not be read ({type(exc).__name__}: {exc})"
        if problem is not None:
            warnings.warn(f"session cache {str(self.path)!r}: {problem}; it will be rebuilt",
                          CacheFileWarning, stacklevel=3)
            return empty_sessions_frame(), False
        covered = metadata.get(_META_COVERED, b"").decode()
        return newest_first(frame), None if covered == _ALL_HISTORY else pd.Timestamp(covered)

    def _foreign(self, metadata: Mapping[bytes, bytes], names: list[str]) -> str | None:
        key = metadata.get(_META_KEY, b"").decode("utf-8", "replace")
        if key != self.key:
            return f"it belongs to another API or organisation ({key.replace(chr(10), ' / ')!r})"
        version = metadata.get(_META_VERSION, b"").decode("utf-8", "replace")
        if version != SCHEMA_VERSION:
            return f"its schema version is {version!r}, this version reads {SCHEMA_VERSION!r}"
        covered = metadata.get(_META_COVERED, b"").decode("utf-8", "replace")
        if covered != _ALL_HISTORY:
            try:
                pd.Timestamp(covered)
            except ValueError:
                return f"its coverage mark {covered!r} is not a time"
        if "id" not in names:
            return "it has no 'id' column"
        return None

    # -- writing --------------------------------------------------------------------------
    def merge(self, frame: pd.DataFrame, *, covered_since: pd.Timestamp | None | bool = False
              ) -> pd.DataFrame:
        """Add `frame`'s sessions to the cache (same id: the most updated row wins) and return
        the whole cache. `covered_since` records a completed full read; False keeps the old mark."""
        with self._lock:
            stored, covered = self._read()
            if covered_since is not False:
                covered = _wider(covered, covered_since)
            merged = newest_first(keep_latest(concat_sessions([stored, frame])))
            self._write(merged, covered)
            return merged

    def clear(self) -> None:
        """Delete the cache file."""
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _write(self, frame: pd.DataFrame, covered: pd.Timestamp | None | bool) -> None:
        """Atomically replace the file: a write that dies midway leaves the old file intact."""
        table = pa.Table.from_pandas(frame.reset_index(), schema=ARROW_SCHEMA, preserve_index=False)
        mark = _ALL_HISTORY if covered is None else (covered.isoformat() if isinstance(covered, datetime) else "")
        table = table.replace_schema_metadata({
            _META_KEY: self.key.encode("utf-8"), _META_VERSION: SCHEMA_VERSION.encode(),
            _META_COVERED: mark.encode(),
            _META_REFRESHED: datetime.now(UTC).isoformat().encode(),
        })
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()
        handle, temp = tempfile.mkstemp(dir=self.directory, prefix=self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as sink:
                pq.write_table(table, sink, compression="zstd")
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.directory)

    def _remove_stale_temp_files(self) -> None:
        """Temp files left by a writer that was killed (we hold the lock, so none is live)."""
        for leftover in self.directory.glob(self.path.name + ".*.tmp"):
            leftover.unlink(missing_ok=True)

    # -- refreshing -----------------------------------------------------------------------
    def refresh(self, client: Any, *, since: datetime | pd.Timestamp | None = None,
                progress: bool = False) -> pd.DataFrame:
        """Bring the cache up to date and return it, newest first.

        Reads the head of the list down to the first session already stored as ended, then
        re-reads (get_session) sessions stored as active that the head did not cover. When the
        cache does not yet reach back to `since` (None: all history), reads back that far.
        """
        stored, covered = self._read()
        since_ts = None if since is None else _utc(since)
        if covered is False or _reaches_further(since_ts, covered):
            records = client.iter_sessions(per_page=100, since=None if since_ts is None
                                           else since_ts.to_pydatetime())
            fresh = sessions_frame(iterate_with_progress(records, progress))
            return self.merge(fresh, covered_since=since_ts)
        ended = set(stored.index[~stored["is_active"].to_numpy()])
        # `since` adds the client's newest-first check: if the order does not hold it reads
        # every page instead of trusting the stop record.
        newest = stored["start_time"].max()
        records = client.iter_sessions(per_page=100, stop=lambda record: record.get("id") in ended,
                                       since=None if pd.isna(newest) else newest.to_pydatetime())
        fresh = sessions_frame(iterate_with_progress(records, progress))
        still_active = [sid for sid in stored.index[stored["is_active"].to_numpy()]
                        if sid not in fresh.index]
        updated = sessions_frame(self._reread(client, still_active))
        return self.merge(concat_sessions([fresh, updated]))

    @staticmethod
    def _reread(client: Any, session_ids: Iterable[str]) -> list[dict[str, Any]]:
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


def open_store(cache: bool | str | os.PathLike[str], client: Any) -> SessionStore:
    """The store for `client`'s API and organisation: `cache` True means default_cache_dir(),
    otherwise it is the directory. The organisation is read from the newest session."""
    if cache is True:
        directory = default_cache_dir()
    elif isinstance(cache, (str, os.PathLike)) and str(cache):
        directory = Path(cache)
    else:
        raise ValueError(f"cache={cache!r} is not valid: expected None/False (no cache), "
                         "True (the per-user cache directory) or a directory path")
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
