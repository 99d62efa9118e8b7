"""The session dataset: sessions as a lazy table in an engine, not a frame in memory.

A `SessionDataset` wraps an Ibis table holding the column contract (`SESSION_COLUMNS`, the id
as the column `id`). Ibis is the engine-neutral layer: the same expressions run on DuckDB
(embedded, the default, reading the store's hive-partitioned Parquet files), Spark, BigQuery,
Snowflake, Trino or Postgres. Nothing is read until asked: `len(ds)` counts in the engine,
`ds.to_frame(...)` brings one slice into pandas with the contract dtypes, and the count-based
analyses push their counting into the engine (see `analysis.outcomes`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .columns import SESSION_COLUMNS, UTC_TIME
from .sessions import empty_sessions_frame, frame_from_arrow, newest_first
from .store import (
    _CHECKPOINT_FILE,
    _META_KEY,
    _META_VERSION,
    _PARTITION,
    _STORE_FILE,
    SCHEMA_VERSION,
    CacheFileWarning,
)
from .timespan import TimeBound, parse_window

if TYPE_CHECKING:  # Ibis loads on first use: importing the toolkit stays quick
    import ibis.expr.types as ir

__all__ = ["REQUIRED_COLUMNS", "SessionDataset", "dataset_from_directory"]

#: Columns every dataset must have: the analyses count sessions by start time and outcome.
REQUIRED_COLUMNS = ("id", "start_time", "exit_status", "is_active")
_TIME_COLUMNS = [name for name, dtype in SESSION_COLUMNS.items() if dtype == UTC_TIME]
_KEEP_FOR_FRAME = ("id", "start_time", "updated_at", "is_active")


class SessionDataset:
    """Sessions as a lazy Ibis table with the column contract; see `session_dataset`.

    Parameters
    ----------
    table : ibis.Table
        Any Ibis table with the contract's columns (at least id, start_time, exit_status and
        is_active; analyses name any other column they need).
    path : path, optional
        The dataset directory, when the table reads one.
    notes : sequence of str
        Data-quality notes found while opening it (skipped parts), also raised as warnings.

    Raises
    ------
    TypeError
        `table` is not an Ibis table.
    ValueError
        The table lacks a required column (the message lists the table's columns).
    """

    def __init__(self, table: ir.Table, *, path: str | os.PathLike[str] | None = None,
                 notes: Sequence[str] = ()) -> None:
        import ibis.expr.types as ir

        if not isinstance(table, ir.Table):
            raise TypeError(f"expected an Ibis table with the session columns, got {type(table).__name__}")
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"the table lacks column(s) {missing} of the session column contract; "
                             f"its columns: {', '.join(table.columns)}")
        self.table = table
        self.path = None if path is None else Path(path)
        self.notes = list(notes)

    @property
    def columns(self) -> list[str]:
        """The table's column names (the contract's, plus any others it carries)."""
        return list(self.table.columns)

    def __len__(self) -> int:
        return int(self.table.count().execute())

    def __repr__(self) -> str:
        where = f" at {str(self.path)!r}" if self.path is not None else ""
        return f"<SessionDataset{where}: {len(self.table.columns)} columns, {_backend_name(self.table)}>"

    def filtered(self, since: TimeBound = None, until: TimeBound = None,
                 where: Any = None) -> ir.Table:
        """The table restricted to sessions started in [since, until] and to `where`.

        Parameters
        ----------
        since, until : datetime, str or None
            The forms `fetch_sessions` takes (naive = UTC, ISO strings, spans such as "7d").
        where : mapping or Ibis boolean expression, optional
            ``{"engine_region": "us-east"}`` (a value or a list of values per column), or an
            expression over `table` such as ``ds.table.tts_provider == "cartesia"``.

        Returns
        -------
        ibis.Table
            A lazy table; nothing has run yet.

        Raises
        ------
        ValueError
            A bad window, or `where` names a column the table lacks.
        """
        import ibis.expr.types as ir

        start, end = parse_window(since, until)
        table = self.table
        if start is not None:
            table = table.filter(table.start_time >= start.to_pydatetime())
        if end is not None:
            table = table.filter(table.start_time <= end.to_pydatetime())
        if where is None:
            return table
        if isinstance(where, Mapping):
            for column, value in where.items():
                if column not in table.columns:
                    raise ValueError(f"where names unknown column {column!r}; valid columns: "
                                     f"{', '.join(table.columns)}")
                values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
                table = table.filter(table[column].isin(values))
            return table
        if isinstance(where, ir.BooleanValue):
            return table.filter(where)
        raise TypeError(f"where={where!r} is not usable: pass a mapping of column -> value(s) or an "
                        "Ibis boolean expression over the dataset's table")

    def within(self, since: TimeBound = None, until: TimeBound = None, where: Any = None) -> SessionDataset:
        """The dataset restricted to sessions started in [since, until] and to `where`, still lazy.

        Parameters
        ----------
        since, until, where
            As for `filtered`.

        Returns
        -------
        SessionDataset
            The same engine and directory; nothing has run yet.

        Raises
        ------
        ValueError
            A bad window, or `where` names a column the table lacks.
        """
        return SessionDataset(self.filtered(since, until, where), path=self.path, notes=self.notes)

    def to_frame(self, since: TimeBound = None, until: TimeBound = None,
                 columns: Sequence[str] | None = None, where: Any = None,
                 limit: int | None = None) -> pd.DataFrame:
        """One slice of the dataset as the typed sessions frame, newest first.

        Parameters
        ----------
        since, until : datetime, str or None
            Sessions started in [since, until] (see `filtered`).
        columns : sequence of str, optional
            Only these contract columns (the id is always the index); None for all.
        where : mapping or Ibis boolean expression, optional
            A further filter (see `filtered`).
        limit : int, optional
            Only the newest `limit` sessions of the slice (by start time): a bounded sample of
            rows to show, whatever the size of the dataset.

        Returns
        -------
        pandas.DataFrame
            Indexed by session id, with the contract dtypes (the same as the store's load).

        Raises
        ------
        ValueError
            A bad window or `limit`, or `columns`/`where` name a column the dataset lacks.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit={limit!r} is not valid: expected None or a whole number >= 0")
        table = self.filtered(since, until, where)
        if limit is not None:
            import ibis

            table = table.order_by([ibis.desc(table.start_time), table.id]).limit(limit)
        wanted = None
        if columns is not None:
            wanted = [columns] if isinstance(columns, str) else list(columns)
            unknown = [c for c in wanted if c not in table.columns]
            if unknown:
                raise ValueError(f"columns names unknown column(s) {unknown}; valid columns: "
                                 f"{', '.join(table.columns)}")
            keep = list(dict.fromkeys([*(c for c in _KEEP_FOR_FRAME if c in table.columns), *wanted]))
            table = table.select(keep)
        else:
            table = table.select([c for c in table.columns if c == "id" or c in SESSION_COLUMNS])
        frame = _frame(table.to_pyarrow())
        if wanted is not None:
            frame = frame[[c for c in wanted if c != "id"]]
        return frame

    def session(self, session_id: str) -> pd.Series:
        """One session's row, by id.

        Parameters
        ----------
        session_id : str
            The session's id.

        Returns
        -------
        pandas.Series
            The row, named by its id.

        Raises
        ------
        KeyError
            No session has that id.
        """
        table = self.table
        frame = _frame(table.filter(table.id == str(session_id)).select(
            [c for c in table.columns if c == "id" or c in SESSION_COLUMNS]).to_pyarrow())
        if frame.empty:
            raise KeyError(f"no session with id {session_id!r} in the dataset")
        return frame.iloc[0]


def _frame(table: pa.Table) -> pd.DataFrame:
    """An engine's Arrow answer → the typed frame (times in UTC whatever zone it answered in)."""
    if table.num_rows == 0:
        return empty_sessions_frame()
    for name in _TIME_COLUMNS:
        if name in table.column_names:
            i = table.column_names.index(name)
            column = table.column(i)
            if pa.types.is_timestamp(column.type) and column.type.tz is None:
                column = column.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
            else:
                column = column.cast(pa.timestamp("us", tz="UTC"))
            table = table.set_column(i, name, column)
    return newest_first(frame_from_arrow(table))


def _backend_name(table: ir.Table) -> str:
    try:
        return str(table.get_backend().name)
    except Exception:  # an unbound table (a memtable before execution) has no backend yet
        return "unbound"


# ------------------------------------------------------------------ the store's directory

def _parts_of(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{_PARTITION}=*/part-*.parquet"))


def dataset_from_directory(directory: str | os.PathLike[str], *,
                           connection: Any = None) -> SessionDataset:
    """The store's dataset directory (``sessions-<hash>``) as a `SessionDataset` on DuckDB.

    Each part file is checked before it is read: one that cannot be read, or whose key or
    schema version is not the dataset's, is left out with a `CacheFileWarning` (a data note
    the notebooks show) naming it. Where a killed writer left two copies of a session in one
    start-date partition, the most recently updated one is kept.

    Parameters
    ----------
    directory : str or path
        A dataset directory holding ``_store.json`` and ``start_date=*/part-*.parquet``.
    connection : ibis DuckDB backend, optional
        The connection to read with; a new embedded DuckDB by default.

    Returns
    -------
    SessionDataset
        A lazy dataset over the good parts (empty when there are none).

    Raises
    ------
    ValueError
        `directory` is not a session dataset (no ``_store.json`` and no part files).
    """
    import ibis

    directory = Path(directory).expanduser()
    meta_file = directory / _STORE_FILE
    parts = _parts_of(directory)
    if not meta_file.exists() and not parts:
        raise ValueError(f"{str(directory)!r} is not a session dataset: it holds no {_STORE_FILE} and no "
                         f"{_PARTITION}=*/part-*.parquet files (give a cache directory, the dataset "
                         "directory inside it, or an Ibis table)")
    notes: list[str] = []
    key = None
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
        key = meta.get("key") if isinstance(meta, dict) else None
        if isinstance(meta, dict) and meta.get("schema_version") != SCHEMA_VERSION:
            notes.append(f"session dataset {str(directory)!r}: its schema version is "
                         f"{meta.get('schema_version')!r}, this version reads {SCHEMA_VERSION!r}")
    except (OSError, ValueError) as exc:
        notes.append(f"session dataset {str(directory)!r}: its {_STORE_FILE} could not be read "
                     f"({type(exc).__name__}); parts are checked against each other")
    good: list[Path] = []
    per_partition: dict[str, int] = {}
    for part in parts:
        problem = _part_problem(part, key)
        if problem is None:
            good.append(part)
            per_partition[part.parent.name] = per_partition.get(part.parent.name, 0) + 1
            if key is None:
                key = pq.read_schema(part).metadata.get(_META_KEY, b"").decode("utf-8", "replace")
        else:
            notes.append(f"session dataset part {str(part)!r}: {problem}; it is left out")
    if (directory / _CHECKPOINT_FILE).exists():
        notes.append(f"session dataset {str(directory)!r}: a first read is unfinished (run sync to "
                     "complete it); the dataset holds what was stored so far")
    for note in notes:
        warnings.warn(note, CacheFileWarning, stacklevel=3)
    if connection is None:
        connection = ibis.duckdb.connect()
        connection.raw_sql("SET TimeZone = 'UTC'")  # times are UTC inside; no calendar conversions
        # A long query would draw a text progress bar on stderr: noise in a notebook or report.
        connection.raw_sql("SET enable_progress_bar = false")
    con = connection
    if not good:
        table = ibis.memtable(empty_sessions_frame().drop(columns=["stale_active"]).reset_index())
        return SessionDataset(con.create_table(_unique_name(), table.to_pyarrow(), temp=True),
                              path=directory, notes=notes)
    single = [p for p in good if per_partition[p.parent.name] == 1]
    several = [p for p in good if per_partition[p.parent.name] > 1]
    tables = []
    if single:
        tables.append(_read(con, single))
    if several:  # a killed writer may have left two copies of a session: the most updated wins
        raw = _read(con, several)
        ranked = raw.mutate(_rank=ibis.row_number().over(group_by=raw.id, order_by=ibis.desc(raw.updated_at)))
        tables.append(ranked.filter(ranked._rank == 0).drop("_rank"))
    table = tables[0] if len(tables) == 1 else tables[0].union(tables[1].select(tables[0].columns))
    return SessionDataset(table, path=directory, notes=notes)


def _read(con: Any, files: list[Path]) -> ir.Table:
    table = con.read_parquet([str(f) for f in files], hive_partitioning=False, union_by_name=True,
                             table_name=_unique_name())
    return table.select([c for c in table.columns if c == "id" or c in SESSION_COLUMNS])


_COUNTER = iter(range(1 << 62))


def _unique_name() -> str:
    return f"anam_sessions_{os.getpid()}_{next(_COUNTER)}"


def _part_problem(part: Path, key: str | None) -> str | None:
    """Why a part must be left out (unreadable, another key or schema, no id), or None."""
    try:
        schema = pq.read_schema(part)
    except (OSError, pa.ArrowException, ValueError) as exc:
        return f"it could not be read ({type(exc).__name__}: {exc})"
    metadata = schema.metadata or {}
    part_key = metadata.get(_META_KEY, b"").decode("utf-8", "replace")
    version = metadata.get(_META_VERSION, b"").decode("utf-8", "replace")
    if key is not None and part_key != key:
        shown = part_key.replace(chr(10), " / ")
        return f"it belongs to another API or organisation ({shown!r})"
    if version != SCHEMA_VERSION:
        return f"its schema version is {version!r}, this version reads {SCHEMA_VERSION!r}"
    if "id" not in schema.names:
        return "it has no 'id' column"
    return None
