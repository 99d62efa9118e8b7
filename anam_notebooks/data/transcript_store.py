"""A local cache of transcripts, as turns, for one organisation at one API base URL.

A transcript does not change once its session has ended, so ended sessions' answers are kept
for good: their turns, and also the answers that had no transcript (404, transcripts disabled),
which would not change either. Active sessions are never stored.

Layout: a folder per (base URL, organisation), named by a hash of that key; every save adds one
Parquet part written atomically (temp file, fsync, rename), whose metadata records the key, the
schema version and each stored session's outcome, and whose name ends in the SHA-256 of its
bytes (one rename brings both; a part whose bytes changed since is skipped, and its sessions
asked for again). Two kernels can save at once without a lock
(parts have unique names); when parts pile up they are merged into one under a file lock. A
corrupt or foreign part is reported and skipped, never mixed in. The response gap is not stored:
it is recomputed from the stored turns on load, so it always follows the current definition.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from .columns import STRING, TIMEDELTA, UTC_TIME
from .fields import categorical
from .files import atomic_write
from .store import CacheFileWarning, cache_directory
from .transcripts import concat_turns, empty_turns, response_gaps

__all__ = ["OUTCOMES", "TRANSCRIPT_SCHEMA_VERSION", "TranscriptStore", "concat_turns", "empty_turns",
           "open_transcript_store"]

TRANSCRIPT_SCHEMA_VERSION = "1"
# What asking for a transcript can end in; only the first three are worth remembering.
OUTCOMES = ("transcript", "not_found", "transcripts_disabled", "failed", "invalid_id")
STORED_OUTCOMES = frozenset(OUTCOMES[:3])
_META_KEY = b"anam_notebooks.key"
_META_VERSION = b"anam_notebooks.transcript_schema_version"
_META_OUTCOMES = b"anam_notebooks.outcomes"
COMPACT_AFTER = 32  # parts
_CHECKSUM = re.compile(r"-([0-9a-f]{64})\.parquet")  # at the end of a part's name: SHA-256 of its bytes

_SCHEMA = pa.schema([
    pa.field("session_id", pa.string()), pa.field("turn_index", pa.int64()),
    pa.field("role", pa.string()), pa.field("text", pa.string()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")), pa.field("speaking_duration", pa.duration("us")),
    pa.field("interrupted", pa.bool_()),
])


class TranscriptStore:
    """Cached transcripts (as turns) and outcomes of one organisation at one API base URL."""

    def __init__(self, directory: str | os.PathLike[str], *, base_url: str,
                 organization_id: str | None = None, lock_timeout: float = 120.0) -> None:
        if not isinstance(base_url, str) or not base_url:
            raise ValueError(f"base_url={base_url!r} is not valid: expected the API base URL, "
                             "e.g. 'https://api.anam.ai'")
        self.directory = Path(directory).expanduser()
        self.base_url = base_url.rstrip("/")
        self.organization_id = organization_id
        self.key = f"{self.base_url}\n{organization_id or ''}"
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:24]
        self.folder = self.directory / f"transcripts-{digest}"
        self._lock = FileLock(str(self.folder) + ".lock", timeout=lock_timeout)

    def __repr__(self) -> str:
        return (f"TranscriptStore({str(self.directory)!r}, base_url={self.base_url!r}, "
                f"organization_id={self.organization_id!r})")

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []

    # -- reading --------------------------------------------------------------------------
    def load(self, session_ids: Collection[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
        """Stored turns and outcomes (session id → outcome), for `session_ids` or everything."""
        wanted = None if session_ids is None else set(session_ids)
        outcomes: dict[str, str] = {}
        tables = []
        for part in self.parts():
            read = self._read_part(part, wanted, outcomes)
            if read is not None:
                tables.append(read)
        if not tables:
            return empty_turns(), outcomes
        return turns_from_arrow(pa.concat_tables(tables)), outcomes

    def _read_part(self, part: Path, wanted: set[str] | None, outcomes: dict[str, str]) -> pa.Table | None:
        """The rows of `part` for sessions not already read (first part wins), noting outcomes."""
        try:
            data = part.read_bytes()
            named = _CHECKSUM.search(part.name)
            if named is not None and hashlib.sha256(data).hexdigest() != named.group(1):
                raise ValueError("its bytes do not match the checksum in its name")
            meta = pq.read_schema(io.BytesIO(data)).metadata or {}
            problem = self._foreign(meta)
            if problem is None:
                stored = json.loads(meta[_META_OUTCOMES].decode("utf-8"))
                if not isinstance(stored, dict):
                    raise ValueError("its outcomes are not a mapping")
                new = {sid: out for sid, out in stored.items()
                       if sid not in outcomes and out in STORED_OUTCOMES and (wanted is None or sid in wanted)}
                if not new:
                    return None
                table = pq.read_table(io.BytesIO(data), schema=_SCHEMA)
        except FileNotFoundError:
            return None  # merged away by another kernel meanwhile; its rows are in the merged part
        except (OSError, pa.ArrowException, ValueError, TypeError, KeyError) as exc:
            problem = f"it could not be read ({type(exc).__name__}: {exc})"
        if problem is not None:
            warnings.warn(f"transcript cache part {part.name!r}: {problem}; it is skipped",
                          CacheFileWarning, stacklevel=4)
            return None
        outcomes.update(new)
        keep = pc.is_in(table["session_id"], value_set=pa.array(list(new), pa.string()))
        return table.filter(keep)

    def _foreign(self, meta: Mapping[bytes, bytes]) -> str | None:
        key = meta.get(_META_KEY, b"").decode("utf-8", "replace")
        if key != self.key:
            return f"it belongs to another API or organisation ({key.replace(chr(10), ' / ')!r})"
        version = meta.get(_META_VERSION, b"").decode("utf-8", "replace")
        if version != TRANSCRIPT_SCHEMA_VERSION:
            return f"its schema version is {version!r}, this version reads {TRANSCRIPT_SCHEMA_VERSION!r}"
        if _META_OUTCOMES not in meta:
            return "it records no outcomes"
        return None

    # -- writing --------------------------------------------------------------------------
    def save(self, turns: pd.DataFrame, outcomes: Mapping[str, str]) -> None:
        """Store the outcomes worth keeping (transcript, not_found, transcripts_disabled) and the
        turns of those sessions, as one new part. The caller passes ended sessions only."""
        keep = {str(sid): out for sid, out in outcomes.items() if out in STORED_OUTCOMES}
        if not keep:
            return
        rows = turns[turns["session_id"].isin(list(keep)).fillna(False).to_numpy(dtype=bool)]
        with self._lock:  # the write sweeps a killed writer's temp files: never a live one's
            self._write_part(turns_to_arrow(rows), keep)
        if len(self.parts()) > COMPACT_AFTER:
            self.compact()

    def compact(self) -> None:
        """Merge every part into one (under the lock), so loading stays one read."""
        with self._lock:
            old = self.parts()
            if len(old) < 2:
                return
            turns, outcomes = self.load()
            self._write_part(turns_to_arrow(turns), outcomes, prefix="part-0-")
            for part in old:
                part.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete every stored part."""
        with self._lock:
            for part in self.parts():
                part.unlink(missing_ok=True)

    def _write_part(self, table: pa.Table, outcomes: Mapping[str, str], prefix: str = "part-1-") -> None:
        table = table.replace_schema_metadata({
            _META_KEY: self.key.encode("utf-8"), _META_VERSION: TRANSCRIPT_SCHEMA_VERSION.encode(),
            _META_OUTCOMES: json.dumps(dict(outcomes), separators=(",", ":")).encode("utf-8"),
        })
        # Sorted names put a merged part ("part-0-...") first, so its rows win over stragglers.
        stamp = f"{prefix}{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        atomic_write(self.folder / f"{stamp}-{{sha256}}.parquet",
                     lambda sink: pq.write_table(table, sink, compression="zstd"), name_by_checksum=True)


def turns_to_arrow(turns: pd.DataFrame) -> pa.Table:
    columns = {name: turns[name] for name in _SCHEMA.names}
    data = pd.DataFrame(columns).astype({"role": object})
    return pa.Table.from_pandas(data, schema=_SCHEMA, preserve_index=False)


def turns_from_arrow(table: pa.Table) -> pd.DataFrame:
    """Stored rows → the typed turns frame, response_gap recomputed."""
    def strings(name: str) -> pd.arrays.ArrowStringArray:
        return pd.array(table[name].to_pandas(types_mapper={pa.string(): STRING}.get), dtype=STRING)

    timestamp = pd.Series(table["timestamp"].to_pandas(), dtype=UTC_TIME)
    speaking = table["speaking_duration"].to_numpy().astype(TIMEDELTA)
    turn_index = table["turn_index"].to_numpy(zero_copy_only=False).astype(np.int64)
    frame = pd.DataFrame({
        "session_id": strings("session_id"), "turn_index": turn_index,
        "role": categorical(table["role"]), "text": strings("text"),
        "timestamp": timestamp.array, "speaking_duration": speaking,
        "interrupted": pd.array(table["interrupted"].to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get),
                                dtype=pd.BooleanDtype()),
    }, index=pd.RangeIndex(table.num_rows, name="turn"))
    roles = pd.Series(table["role"].to_pandas(), dtype=object)
    frame["response_gap"] = response_gaps(frame["session_id"], turn_index, roles, timestamp, speaking)
    return frame


def open_transcript_store(cache: bool | str | os.PathLike[str], base_url: str,
                          organization_id: str | None) -> TranscriptStore:
    """The transcript store in `cache` (True: the per-user cache directory) for this API and
    organisation (read from the sessions frame, so opening it costs no request)."""
    directory = cache_directory(cache)
    return TranscriptStore(directory, base_url=base_url, organization_id=organization_id)
