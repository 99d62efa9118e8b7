"""Sessions reduced to integers: what `rank_suspects` reads of every row, and nothing more.

The ranking's statistics run on counts (`analysis.counts`), but its reconciliation of causes
asks questions about individual sessions (is one unit inside another, how many failed sessions
do two candidates share, how many customers did a window hit). For those it keeps, per ended
session with a start time: the start (nanoseconds since the epoch), whether it failed, and one
small integer per attribute naming the session's unit, plus one for its customer. That is about
30 bytes a session with sixteen attributes (a byte a code where a level has under 128 units),
whatever the length of the labels.

`coded_sessions` builds the same codes from a pandas frame or from a `SessionDataset`. From a
dataset the engine filters and projects, and the rows arrive in Arrow record batches (one
streamed query on DuckDB, the next chunk read by a second thread while the last is encoded;
chunks of whole start hours on any other engine) that are dictionary-encoded as they come:
the labels of at most two chunks are held at once, and memory grows with sessions only by
those few integers. Codes are canonical (a unit's code is the rank of its label
in sorted order), so the frame and the dataset give identical arrays for the same sessions, in
whatever order the rows come.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..data.checks import ended_mask
from ..data.dataset import SessionDataset
from .failures import FailureSpec, is_failure

if TYPE_CHECKING:
    import ibis.expr.types as ir

#: Rows per chunk read from an engine: bounds the labels held at once.
BATCH_ROWS = 262_144
_NONE = -1


@dataclass(frozen=True)
class CodedSessions:
    """Ended sessions with a start time, as integers (see the module docstring).

    Attributes
    ----------
    start_ns
        Each session's start, nanoseconds since the epoch in UTC (int64).
    fail
        Whether each session's exit status counts as a failure (bool).
    codes
        Per attribute, each session's unit code (-1 for a missing value): the index of its label
        in `names` (int8, int16 or int32, the smallest that holds the codes; widen before
        arithmetic).
    names
        Per attribute, the unit labels as text, sorted (index = code).
    customer
        Each session's customer, a code for its (client label, API key) pair; -1 when both are
        missing (int32). Only equality of codes is meaningful.
    """

    start_ns: np.ndarray
    fail: np.ndarray
    codes: dict[str, np.ndarray]
    names: dict[str, np.ndarray]
    customer: np.ndarray

    def __len__(self) -> int:
        return len(self.start_ns)


class _Labels:
    """Labels seen so far in one column and their provisional codes (order of first sight)."""

    def __init__(self) -> None:
        self.code: dict[str, int] = {}

    def encode(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The provisional codes of a batch's values (-1 for missing), int32."""
        encoded = pc.dictionary_encode(column)
        if isinstance(encoded, pa.ChunkedArray):
            # One dictionary for every chunk: its labels are looked up once, not per chunk.
            chunks = encoded.unify_dictionaries().chunks
        else:
            chunks = [encoded]
        if not chunks:
            return np.zeros(0, np.int32)
        labels = chunks[0].dictionary.to_pylist()
        known = np.array([self.code.setdefault(_text(v), len(self.code)) for v in labels]
                         + [_NONE], dtype=np.int32)
        out = []
        for chunk in chunks:
            index = chunk.indices if not chunk.indices.null_count else chunk.indices.fill_null(len(labels))
            out.append(known[index.to_numpy(zero_copy_only=False)])
        return np.concatenate(out) if len(out) > 1 else out[0]

    def canonical(self, provisional: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes renumbered by sorted label, in the smallest integer type, and the labels."""
        return _canonical(provisional, list(self.code))


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _canonical(codes: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    names = np.array(labels, dtype=object)
    order = np.argsort(names.astype(str), kind="stable") if len(names) else np.zeros(0, np.int64)
    rank = np.empty(len(names) + 1, dtype=np.int64)
    rank[order] = np.arange(len(names))
    rank[-1] = _NONE                       # a provisional -1 indexes the last slot
    return rank[codes].astype(_smallest(len(names))), names[order]


def _smallest(labels: int) -> type[np.signedinteger]:
    """The smallest integer type holding codes -1 .. labels - 1."""
    return np.int8 if labels < 2 ** 7 else np.int16 if labels < 2 ** 15 else np.int32


def _customers(label: np.ndarray, key: np.ndarray, n_labels: int, n_keys: int) -> np.ndarray:
    """One code per (label, key) pair of codes; -1 when both are missing."""
    pair = pair_keys(label, key, n_labels, n_keys)
    _, code = _distinct(pair, (n_labels + 1) * (n_keys + 1))
    customer = code.astype(np.int32)
    customer[pair == 0] = _NONE
    return customer


def pair_keys(first: np.ndarray, second: np.ndarray, n_first: int, n_second: int) -> np.ndarray:
    """One key per pair of codes (-1: none), (first + 1) * (n_second + 1) + second + 1, below
    (n_first + 1) * (n_second + 1); 0 where both are missing. Computed in three passes, widened
    as it is read (codes may be int8/int16; no widened copy of either is made)."""
    wide = np.int32 if (n_first + 1) * (n_second + 1) < 2 ** 31 else np.int64
    pair = np.multiply(first, n_second + 1, dtype=wide)
    np.add(pair, second, out=pair, dtype=wide)
    np.add(pair, n_second + 2, out=pair)
    return pair


def _distinct(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for non-negative keys below `size`, by counting
    when `size` is small enough (no sort: the step that dominates a million sessions)."""
    if size > 4_000_000:
        return np.unique(keys, return_inverse=True)
    present = np.bincount(keys, minlength=size) > 0
    distinct = np.flatnonzero(present)
    position = np.cumsum(present) - 1
    return distinct, position[keys]


def coded_sessions(source: pd.DataFrame | SessionDataset, levels: Sequence[str],
                   failures: FailureSpec = None,
                   customer_columns: Sequence[str] = ("client_label", "api_key_id"),
                   batch_rows: int = BATCH_ROWS, stream: bool = True) -> CodedSessions:
    """The ended sessions with a start time of a frame or a dataset, as integer codes.

    Parameters
    ----------
    source : DataFrame or SessionDataset
        The sessions. A frame's `is_active` (or, without it, an end time or exit status) says
        which ended; a dataset's `is_active` is required by its contract.
    levels : sequence of str
        The attributes to code (columns of `source`).
    failures : collection of str, callable or None
        Which exit statuses count as failures (see `is_failure`); applied to each distinct
        status once.
    customer_columns : sequence of str
        The columns naming a customer (those present are used; none gives -1 everywhere).
    batch_rows : int
        Rows per record batch read from a dataset's engine.
    stream : bool
        Read a DuckDB dataset as one streamed query (the default); False, or any other
        engine, reads it in chunks of whole start hours, one query each.

    Returns
    -------
    CodedSessions

    Raises
    ------
    KeyError
        A level is not a column of `source`.
    TypeError
        `failures` is not a valid rule.
    """
    if isinstance(source, SessionDataset):
        return _from_dataset(source, list(levels), failures, customer_columns, batch_rows, stream)
    return _from_frame(source, list(levels), failures, customer_columns)


def _from_frame(df: pd.DataFrame, levels: list[str], failures: FailureSpec,
                customer_columns: Sequence[str]) -> CodedSessions:
    start = pd.to_datetime(df["start_time"], utc=True, errors="coerce")
    keep = ended_mask(df) & start.notna().to_numpy()
    start_ns = start[keep].to_numpy(dtype="datetime64[ns]").view(np.int64)
    fail = is_failure(df["exit_status"][keep], failures)
    codes, names = {}, {}
    for col in levels:
        code, labels = pd.factorize(df[col][keep], use_na_sentinel=True)
        codes[col], names[col] = _canonical(code.astype(np.int64), [_text(v) for v in labels])
    present = [c for c in customer_columns if c in df.columns]
    customer = np.full(len(start_ns), _NONE, dtype=np.int32)
    if present:
        parts = []
        for col in present:
            code, labels = pd.factorize(df[col][keep], use_na_sentinel=True)
            parts.append((code.astype(np.int64), len(labels)))
        customer = _customer_of(parts)
    return CodedSessions(start_ns, np.asarray(fail, dtype=bool), codes, names, customer)


def _customer_of(parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
    label, n_labels = parts[0]
    if len(parts) == 1:
        return _customers(label, np.full(len(label), _NONE, np.int8), n_labels, 0)
    key, n_keys = parts[1]
    return _customers(label, key, n_labels, n_keys)


def _streamed(ended: ir.Table, batch_rows: int) -> Iterator[pa.Table] | None:
    """The rows of `ended` as one query streamed by DuckDB, in tables of about `batch_rows`
    rows; None when the table is not DuckDB's (or DuckDB cannot plan it as SQL here).

    DuckDB's relation is read through the Arrow C stream interface, which every DuckDB release
    of the last years offers (Ibis's own `to_pyarrow_batches` breaks on DuckDB 2)."""
    import ibis

    try:
        backend = ibis.get_backend(ended)
        if backend.name != "duckdb":
            return None
        relation = backend.con.sql(backend.compile(ended))
        reader = pa.RecordBatchReader.from_stream(relation)
    except Exception:   # e.g. a table held only in Ibis's memory: read in chunks instead
        return None

    def tables() -> Iterator[pa.Table]:
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in reader:
            pending.append(batch)
            held += batch.num_rows
            if held >= batch_rows:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
        if pending:
            yield pa.Table.from_batches(pending)

    return tables()


def _ahead(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The tables of `tables`, the next one read by a second thread while the caller encodes
    the last: the engine's scan and pyarrow's encoding both run without holding the GIL, so
    they overlap. At most one table is read ahead (the labels held at once double, no more);
    a caller that stops early waits for that one read to end, leaving no thread behind."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="coded-read") as pool:
        pending = pool.submit(next, tables, None)
        while True:
            table = pending.result()
            if table is None:
                return
            pending = pool.submit(next, tables, None)
            yield table


def _chunks(ended: ir.Table, batch_rows: int) -> Iterator[pa.Table]:
    """The rows of `ended` in chunks of whole start hours holding about `batch_rows` rows each.

    Each chunk is one query filtered on start time, so any Ibis backend serves it with plain
    `to_pyarrow` (no streaming API needed) and no more than a chunk of labels is held at once.
    An hour holding more than `batch_rows` rows is one chunk of its own.
    """
    hour = ended.start_time.truncate("h").name("hour")
    plan = ended.group_by(hour).aggregate(n=ended.count()).order_by("hour").to_pyarrow()
    hours = plan.column("hour").to_pylist()
    sizes = plan.column("n").to_numpy(zero_copy_only=False).astype(np.int64)
    first = 0
    while first < len(hours):
        last, held = first, int(sizes[first])
        while last + 1 < len(hours) and held + sizes[last + 1] <= batch_rows:
            last += 1
            held += int(sizes[last])
        chunk = ended.filter(ended.start_time >= hours[first])
        if last + 1 < len(hours):
            chunk = chunk.filter(chunk.start_time < hours[last + 1])
        yield chunk.to_pyarrow()
        first = last + 1


def _from_dataset(ds: SessionDataset, levels: list[str], failures: FailureSpec,
                  customer_columns: Sequence[str], batch_rows: int, stream: bool) -> CodedSessions:
    for col in [*levels, "exit_status", "start_time"]:
        if col not in ds.columns:
            raise KeyError(f"column {col!r} is not in the dataset; valid columns: {', '.join(ds.columns)}")
    t = ds.table
    present = [c for c in customer_columns if c in t.columns]
    wanted = list(dict.fromkeys(["start_time", "exit_status", *levels, *present]))
    ended = t.filter(~t.is_active.fill_null(False) & t.start_time.notnull()).select(wanted)
    rows = int(ended.count().execute())
    start_ns = np.empty(rows, dtype=np.int64)
    status = np.empty(rows, dtype=np.int16)   # a few distinct exit statuses
    # Provisional codes start as int8 and widen only when a column has that many labels.
    provisional = {col: np.empty(rows, dtype=np.int8) for col in wanted[2:]}
    labels = {col: _Labels() for col in wanted[1:]}
    at = 0
    streamed = _streamed(ended, batch_rows) if stream else None
    for batch in _ahead(streamed) if streamed is not None else _chunks(ended, batch_rows):
        size = batch.num_rows
        if at + size > rows:   # the table grew while read: count what was asked for
            raise RuntimeError(f"the dataset changed while it was read ({rows} ended sessions "
                               "counted, more arrived); run again")
        when = batch.column("start_time")
        if pa.types.is_timestamp(when.type) and when.type.tz not in (None, "UTC", "Etc/UTC"):
            when = pc.cast(when, pa.timestamp(when.type.unit, "UTC"))
        start_ns[at:at + size] = pc.cast(when, pa.timestamp("ns", when.type.tz)).cast(
            pa.int64()).to_numpy(zero_copy_only=False)
        statuses = labels["exit_status"].encode(batch.column("exit_status"))
        if len(labels["exit_status"].code) >= 2 ** 15 and status.dtype == np.int16:
            status = status.astype(np.int32)   # a hostile table: that many distinct statuses
        status[at:at + size] = statuses
        for col in provisional:
            codes_now = labels[col].encode(batch.column(col))
            need = _smallest(len(labels[col].code))
            if np.dtype(need).itemsize > provisional[col].dtype.itemsize:
                provisional[col] = provisional[col].astype(need)
            provisional[col][at:at + size] = codes_now
        at += size
    start_ns, status = start_ns[:at], status[:at]
    distinct = list(labels["exit_status"].code)
    flags = np.append(is_failure(pd.Series(distinct, dtype=object), failures), False)
    fail = flags[status]
    customer = np.full(at, _NONE, dtype=np.int32)
    if present:
        customer = _customer_of([(provisional[c][:at], len(labels[c].code)) for c in present])
    codes, names = {}, {}
    for col in levels:   # each provisional array is dropped once renumbered
        codes[col], names[col] = labels[col].canonical(provisional.pop(col)[:at])
    return CodedSessions(start_ns, fail, codes, names, customer)
