"""Session records → the typed sessions frame (the contract is in `columns`).

`sessions_frame` reads records in chunks into compact Arrow columns as they arrive (records
are dropped chunk by chunk, so a million of them never sit in memory at once), converts each
column in one vectorised step, parses engine hosts once per distinct host, and reports
malformed fields as warnings instead of failing.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import union_categoricals

from ..api.errors import PaginationError
from .columns import CATEGORY, SESSION_COLUMNS, STRING, TIMEDELTA, UTC_TIME
from .engine_host import parse_engine_host
from .fields import (
    MalformedRecordWarning,
    Problems,
    bool_array,
    categorical,
    int_array,
    shorten,
    sorted_categorical,
    string_array,
    timestamp_array,
)
from .user_agent import UA_COLUMNS, user_agent_parts

__all__ = [
    "MalformedRecordWarning", "sessions_frame", "empty_sessions_frame", "normalize_sessions_frame",
    "frame_from_arrow", "keep_latest", "newest_first", "concat_sessions",
]

# Records per extraction chunk: small enough that a chunk's records stay in the CPU cache
# between the passes over them (measured ~2x faster than 16k), large enough to amortise Arrow calls.
_CHUNK = 1024
# Longest session length that still fits a microsecond timedelta (about 292,000 years).
_MAX_LENGTH_MS = (2**63 - 1) // 1000
_EMPTY: dict[str, Any] = {}
_CATEGORIES_DTYPE = pd.Index([], dtype=object).astype(str).dtype
# An "active" session that started this long before the newest session of the frame is not
# running any more: no Anam session lasts a day (the platform caps sessions far below it), so
# its end was lost. `stale_active` marks it; a cache refresh stops re-reading it.
STALE_AFTER = pd.Timedelta(hours=24)


_OBJECT_TYPES = {dict, type(None)}


def _report_non_objects(values: Iterable[Any], field: str, ids: list[str], problems: Problems) -> None:
    """A nested object (personaConfig, ...) of another type was read as empty: say so."""
    if set(map(type, values)) <= _OBJECT_TYPES:
        return
    for record_id, value in zip(ids, values):
        if value is not None and type(value) is not dict:
            problems.add(field, record_id, "is not an object", "its fields were set to null")


_TOP_STRINGS = {
    "id": "id", "persona_id": "personaId", "client_label": "clientLabel", "api_key_id": "apiKeyId",
    "organization_id": "organizationId", "exit_status": "exitStatus", "engine_host": "engineHost",
    "engine_protocol": "engineProtocol", "engine_version": "engineVersion",
}
_TOP_TIMES = {"start_time": "startTime", "end_time": "endTime", "created_at": "createdAt",
              "updated_at": "updatedAt"}
_TOP_KEYS = (*_TOP_STRINGS.values(), *_TOP_TIMES.values(), "sessionLengthMs", "personaConfig",
             "clientMetadata")
# Nested values read per record, in the order `_nested_values` returns them.
_NESTED = ("persona_name", "avatar_version", "avatar_key", "language_code", "tts_provider",
           "declared_type", "zero_data_retention", "llm_config", "llm_model", "user_agent", "sdk_version", "tts_model")
_NESTED_FIELDS = {
    "persona_name": "personaConfig.name", "avatar_version": "personaConfig.avatarVersion",
    "avatar_key": "personaConfig.avatarEngineKey", "language_code": "personaConfig.languageCode",
    "tts_provider": "personaConfig.ttsProvider", "llm_model": "personaConfig.llmConfig.modelName",
    "user_agent": "clientMetadata.userAgent", "sdk_version": "clientMetadata.sdkVersion",
    "tts_model": "personaConfig.ttsProviderModelId",
}


def _nested_values(persona: Any, client_meta: Any) -> tuple[Any, ...]:
    """Everything read from personaConfig/clientMetadata, in one visit of each record."""
    p = persona if type(persona) is dict else _EMPTY
    llm = p.get("llmConfig")
    llm_dict = llm if type(llm) is dict else _EMPTY
    meta = client_meta if type(client_meta) is dict else _EMPTY
    avatar = p.get("avatarVersion")
    avatar_key = p.get("avatarEngineKey")
    model = llm_dict.get("modelName")
    return (p.get("name"), avatar if avatar is not None else p.get("avatarModel"),
            avatar_key if avatar_key is not None else p.get("avatarId"), p.get("languageCode"),
            p.get("ttsProvider"), p.get("type"), p.get("zeroDataRetention"), llm,
            model if model is not None else llm_dict.get("model"), meta.get("userAgent"),
            meta.get("sdkVersion"), p.get("ttsProviderModelId"))


def _ids_are_valid(records: list[dict[str, Any]]) -> bool:
    """Fast check that every record has a non-empty string id (the common case)."""
    ids = [r.get("id") for r in records]
    return set(map(type, ids)) == {str} and "" not in ids


def _valid(chunk: list[Any], problems: Problems) -> list[Mapping[str, Any]]:
    """The records that can be keyed; the others are reported and skipped."""
    records: list[Mapping[str, Any]] = []
    for record in chunk:
        if not isinstance(record, dict):
            problems.add("record", f"<item of type {type(record).__name__}>", "is not an object", "skipped")
        elif not isinstance(record.get("id"), str) or not record["id"]:
            problems.add("id", f"<id {shorten(repr(record.get('id')), 40)}>",
                         "is missing or not a non-empty string", "record skipped")
        else:
            records.append(record)
    return records


_S = pa.string()
# The fields read from a record, as an Arrow struct: Arrow's converter visits each record once
# in C++ and raises on any value of another type (then the field-by-field path below reports
# it). sessionLengthMs stays out: Arrow would silently truncate 1.5 to 1.
_RECORD_TYPE = pa.struct(
    [(key, _S) for key in (*_TOP_STRINGS.values(), *_TOP_TIMES.values())]
    + [("personaConfig", pa.struct([
        ("name", _S), ("avatarVersion", _S), ("avatarModel", _S), ("avatarEngineKey", _S),
        ("avatarId", _S), ("languageCode", _S), ("ttsProvider", _S), ("type", _S),
        ("zeroDataRetention", pa.bool_()), ("llmConfig", pa.struct([("modelName", _S), ("model", _S)])),
        ("ttsProviderModelId", _S)])),
       ("clientMetadata", pa.struct([("userAgent", _S), ("sdkVersion", _S)]))])


def _struct_fields(array: pa.StructArray) -> dict[str, pa.Array]:
    """Children of a struct array by name, each null where the struct itself is null."""
    return dict(zip((f.name for f in array.type), array.flatten()))


def _fast_chunk_table(records: list[Mapping[str, Any]], problems: Problems) -> pa.Table:
    """`_chunk_table` for well-formed records: one Arrow conversion of every field we read.

    Raises
    ------
    pyarrow.ArrowTypeError, pyarrow.ArrowInvalid, UnicodeEncodeError
        Some value has another type than the field's (the caller takes the careful path).
    """
    top = _struct_fields(pa.array(records, type=_RECORD_TYPE))
    persona = _struct_fields(top["personaConfig"])
    llm = _struct_fields(persona["llmConfig"])
    client = _struct_fields(top["clientMetadata"])
    ids: list[str] | None = None
    columns: dict[str, pa.Array] = {column: top[key] for column, key in _TOP_STRINGS.items()}
    for column, key in _TOP_TIMES.items():
        try:
            columns[column] = top[key].cast(pa.timestamp("us", tz="UTC"))  # Arrow's ISO-8601 parser
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # other forms: pandas, value by value
            ids = ids if ids is not None else [r["id"] for r in records]
            columns[column] = timestamp_array(top[key].to_pylist(), key, ids, problems)
    lengths = [r.get("sessionLengthMs") for r in records]
    ids = ids if ids is not None else [r["id"] for r in records]
    columns["session_length_ms"] = int_array(lengths, "sessionLengthMs", ids, problems)
    columns["is_active"] = top["endTime"].is_null()
    columns.update(
        persona_name=persona["name"], avatar_version=pc.coalesce(persona["avatarVersion"], persona["avatarModel"]),
        avatar_key=pc.coalesce(persona["avatarEngineKey"], persona["avatarId"]),
        language_code=persona["languageCode"], tts_provider=persona["ttsProvider"],
        llm_model=pc.coalesce(llm["modelName"], llm["model"]), user_agent=client["userAgent"],
        sdk_version=client["sdkVersion"], tts_model=persona["ttsProviderModelId"])
    inferred = pc.if_else(top["personaId"].is_null(), "ephemeral", "stateful")
    columns["persona_type"] = pc.coalesce(persona["type"], inferred)
    columns["zero_data_retention"] = persona["zeroDataRetention"]
    return pa.table({name: columns[name] for name in _CHUNK_COLUMNS})


def _chunk_table(chunk: list[Any], problems: Problems) -> pa.Table:
    """One chunk of raw records → an Arrow table of the directly-read columns."""
    records = chunk if set(map(type, chunk)) == {dict} and _ids_are_valid(chunk) else _valid(chunk, problems)
    if records:
        try:
            return _fast_chunk_table(records, problems)
        except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
            pass  # a value of another type somewhere in the chunk: read it field by field
    # One tuple per record, then transpose: each (large, scattered) record is visited once,
    # not once per field, which is what keeps this memory-bound step fast.
    top = list(zip(*[tuple(map(r.get, _TOP_KEYS)) for r in records])) or [()] * len(_TOP_KEYS)
    raw = dict(zip(_TOP_KEYS, top))
    ids = list(raw["id"])
    nested = dict(zip(_NESTED, zip(*map(_nested_values, raw["personaConfig"], raw["clientMetadata"]))))
    if not nested:
        nested = dict.fromkeys(_NESTED, ())
    _report_non_objects(raw["personaConfig"], "personaConfig", ids, problems)
    _report_non_objects(nested["llm_config"], "personaConfig.llmConfig", ids, problems)
    _report_non_objects(raw["clientMetadata"], "clientMetadata", ids, problems)

    columns: dict[str, pa.Array] = {}
    for column, key in _TOP_STRINGS.items():
        columns[column] = string_array(raw[key], key, ids, problems)
    for column, key in _TOP_TIMES.items():
        columns[column] = timestamp_array(raw[key], key, ids, problems)
    columns["session_length_ms"] = int_array(raw["sessionLengthMs"], "sessionLengthMs", ids, problems)
    columns["is_active"] = pa.array([e is None for e in raw["endTime"]], type=pa.bool_())
    for column, field in _NESTED_FIELDS.items():
        columns[column] = string_array(nested[column], field, ids, problems)
    inferred = pa.array(["ephemeral" if p is None else "stateful" for p in raw["personaId"]],
                        type=pa.string())
    columns["persona_type"] = pc.coalesce(
        string_array(nested["declared_type"], "personaConfig.type", ids, problems), inferred)
    columns["zero_data_retention"] = bool_array(nested["zero_data_retention"],
                                               "personaConfig.zeroDataRetention", ids, problems)
    return pa.table({name: columns[name] for name in _CHUNK_COLUMNS})


# Both paths build the same columns in the same order, so their chunks concatenate.
_CHUNK_COLUMNS = (*_TOP_STRINGS, *_TOP_TIMES, "session_length_ms", "is_active", *_NESTED_FIELDS,
                  "persona_type", "zero_data_retention")

# ---------------------------------------------------------------------------------------------
# Arrow columns → the typed frame
# ---------------------------------------------------------------------------------------------

def _engine_parts(host: pd.Categorical) -> dict[str, pd.Categorical]:
    """Parse each distinct engine host once, then map the parts back through the codes."""
    parsed = [parse_engine_host(h) for h in host.categories]
    parts: dict[str, pd.Categorical] = {}
    for index, column in enumerate(("engine_region", "engine_replicaset", "engine_pod")):
        values = [p[index] for p in parsed]
        distinct = sorted({v for v in values if v is not None})
        position = {v: i for i, v in enumerate(distinct)}
        lookup = np.array([position.get(v, -1) if v is not None else -1 for v in values] + [-1],
                          dtype=np.int32)
        parts[column] = pd.Categorical.from_codes(lookup[np.asarray(host.codes)],
                                                  categories=pd.Index(distinct, dtype=object).astype(str),
                                                  validate=False)
    return parts


def _durations(length_ms: pd.Series, start: pd.Series, end: pd.Series) -> pd.Series:
    """Session length when given (and representable), else end minus start."""
    micros = length_ms.to_numpy(dtype="float64", na_value=np.nan) * 1000.0
    usable = np.isfinite(micros) & (np.abs(micros) < _MAX_LENGTH_MS * 1000.0)
    from_length = np.where(usable, micros, 0).astype(np.int64).view("timedelta64[us]")
    from_length = np.where(usable, from_length, np.timedelta64("NaT", "us"))
    from_times = (end - start).to_numpy(dtype="timedelta64[us]")
    return pd.Series(np.where(usable, from_length, from_times), index=length_ms.index, dtype=TIMEDELTA)


def _frame_from_table(table: pa.Table) -> pd.DataFrame:
    """Directly-read Arrow columns → pandas columns of the contract dtypes."""
    mapper = {pa.string(): STRING, pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    index = pd.Index(table.column("id").to_pandas(types_mapper=mapper), dtype=STRING, name="id")
    data: dict[str, Any] = {}
    for column, dtype in SESSION_COLUMNS.items():
        if column not in table.column_names:
            continue
        arrow = table.column(column)
        if dtype == CATEGORY:
            data[column] = (_dictionary_categorical(arrow) if pa.types.is_dictionary(arrow.type)
                            else categorical(arrow))
        elif dtype == np.dtype(bool):
            data[column] = arrow.fill_null(False).to_numpy()
        else:
            data[column] = arrow.to_pandas(types_mapper=mapper).astype(dtype).array
    return pd.DataFrame(data, index=index)


def _dictionary_categorical(arrow: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column (as the store reads it) → Categorical through its codes, without
    spelling out a string per row (a million rows of user agents would be ~100 MB)."""
    if not arrow.num_chunks:
        return categorical(arrow)
    unified = arrow.unify_dictionaries()
    codes = np.concatenate([chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
                            for chunk in unified.chunks])
    dictionary = unified.chunks[0].dictionary
    if dictionary.null_count:
        return categorical(arrow)  # a null inside the dictionary: the general path handles it
    return sorted_categorical(codes, dictionary.to_pylist())


def normalize_sessions_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every contract column in contract order and dtype; sorted, used-only categories.

    Used after merges so that equal rows give equal frames, however they were assembled.
    """
    out: dict[str, Any] = {}
    for column, dtype in SESSION_COLUMNS.items():
        if column not in frame.columns:
            out[column] = _null_column(dtype, len(frame))
            continue
        values = frame[column]
        if dtype == CATEGORY:
            out[column] = _tidy_categorical(values)
        else:
            out[column] = values.astype(dtype).array
    index = pd.Index(frame.index, dtype=STRING, name="id")
    return pd.DataFrame(out, index=index)


def _tidy_categorical(values: pd.Series) -> pd.Categorical:
    """Sorted, used-only string categories (left as they are when already so: the usual case)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.array
        codes = np.asarray(cat.codes)
        used = np.bincount(codes + 1, minlength=len(cat.categories) + 1)[1:] > 0
        if (used.all() and cat.categories.dtype == _CATEGORIES_DTYPE
                and cat.categories.is_monotonic_increasing):
            return cat
    cat = values.astype("category").array.remove_unused_categories()
    return sorted_categorical(np.asarray(cat.codes, dtype=np.int32), [str(c) for c in cat.categories])


def _null_column(dtype: Any, length: int) -> Any:
    if dtype == CATEGORY:
        return pd.Categorical.from_codes(np.full(length, -1, dtype=np.int8), categories=pd.Index([], dtype=str))
    if dtype == np.dtype(bool):
        return np.zeros(length, dtype=bool)
    return pd.array([None] * length, dtype=dtype) if length else pd.array([], dtype=dtype)


def keep_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop duplicate ids, keeping the most recently updated row (ties: the later row)."""
    if frame.index.is_unique:
        return frame
    order = pd.DataFrame({"id": np.asarray(frame.index, dtype=object),
                          "updated": frame["updated_at"].to_numpy(),
                          "position": np.arange(len(frame))})
    order = order.sort_values(["updated", "position"], na_position="first", kind="stable")
    keep = np.sort(order.drop_duplicates("id", keep="last")["position"].to_numpy())
    return frame.iloc[keep]


def concat_sessions(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack session frames column by column (categoricals unioned), keeping the contract
    dtypes even where one part is empty or all-null; duplicates are left to `keep_latest`."""
    parts = [normalize_sessions_frame(f) for f in frames if len(f)]
    if len(parts) < 2:
        return parts[0] if parts else empty_sessions_frame()
    data: dict[str, Any] = {}
    for column, dtype in SESSION_COLUMNS.items():
        if dtype == CATEGORY:
            data[column] = union_categoricals([p[column].array for p in parts], ignore_order=True)
        else:
            data[column] = pd.concat([p[column] for p in parts], ignore_index=True).array
    index = parts[0].index.append([p.index for p in parts[1:]])
    return normalize_sessions_frame(pd.DataFrame(data, index=pd.Index(index, dtype=STRING, name="id")))


def empty_sessions_frame() -> pd.DataFrame:
    """A frame with no rows but every contract column and dtype."""
    return normalize_sessions_frame(pd.DataFrame(index=pd.Index([], dtype=STRING, name="id")))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Extraction allocates many small tuples; without this, the cyclic collector would walk
    every live record again and again (it dominated the run time on 100k records)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def sessions_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Session records (API-shaped dicts, any iterable) → the typed sessions frame, index `id`.

    Input order is kept; a repeated id keeps its most updated record. Malformed records and
    fields become nulls (or are skipped when they have no id) with a `MalformedRecordWarning`.

    Parameters
    ----------
    records : iterable of dict
        Session records as the API sends them (a list, or an iterator that pages lazily).

    Returns
    -------
    pandas.DataFrame
        One row per session id, with the columns and dtypes of the column contract
        (``anam_notebooks.data.columns``): categoricals, UTC datetimes, nullable integers.

    Raises
    ------
    TypeError
        `records` is a single record (a dict) or a string instead of an iterable of records.
    """
    if isinstance(records, (Mapping, str, bytes)):
        raise TypeError(f"sessions_frame expects an iterable of session records (dicts), "
                        f"got a single {type(records).__name__}; wrap one record in a list")
    problems = Problems()
    iterator = iter(records)
    tables = []
    chunk: list[Any] = []
    try:
        while True:
            chunk.extend(itertools.islice(iterator, _CHUNK))  # may page over the network
            if not chunk:
                break
            with _gc_paused():
                tables.append(_chunk_table(chunk, problems))
            chunk.clear()
    except PaginationError as exc:
        # The records read before the failure were consumed here (`extend` keeps the ones of
        # an unfinished chunk): they go on the error as a frame.
        if chunk:
            tables.append(_chunk_table(chunk, problems))
            chunk.clear()
        problems.emit("sessions_frame")
        exc.frame = _tables_frame(tables)
        raise
    problems.emit("sessions_frame")
    return _tables_frame(tables)


def _tables_frame(tables: list[pa.Table]) -> pd.DataFrame:
    if not tables or not sum(t.num_rows for t in tables):
        return empty_sessions_frame()
    table = pa.concat_tables(tables)
    tables.clear()
    return frame_from_arrow(table)


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """An Arrow table of contract columns (as built here or read from the store) → the frame.

    Derived columns that are absent (duration, engine parts) are computed; other absent
    columns become nulls, so a table written before a column existed still loads.
    """
    if "id" not in table.column_names:
        raise ValueError(f"the table has no 'id' column (columns: {table.column_names})")
    frame = _frame_from_table(table)
    if "duration" not in frame.columns:
        frame["duration"] = _durations(frame["session_length_ms"] if "session_length_ms" in frame
                                       else pd.Series(pd.NA, index=frame.index, dtype="Int64"),
                                       frame.get("start_time", pd.Series(pd.NaT, index=frame.index,
                                                                         dtype=UTC_TIME)),
                                       frame.get("end_time", pd.Series(pd.NaT, index=frame.index,
                                                                       dtype=UTC_TIME)))
    parts = ("engine_region", "engine_replicaset", "engine_pod")
    if "engine_host" in frame.columns and not all(p in frame.columns for p in parts):
        for column, values in _engine_parts(frame["engine_host"].array).items():
            frame[column] = values
    if "user_agent" in frame.columns and not all(c in frame.columns for c in UA_COLUMNS):
        for column, values in user_agent_parts(frame["user_agent"].array).items():
            frame[column] = values
    frame = keep_latest(frame)
    frame["stale_active"] = stale_active(frame)
    return normalize_sessions_frame(frame)


def stale_active(frame: pd.DataFrame) -> np.ndarray:
    """Active sessions that started more than STALE_AFTER before the newest session in the
    frame (the server's "now", whatever the local clock says): their end was never recorded."""
    if "is_active" not in frame.columns or "start_time" not in frame.columns or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    start = frame["start_time"].to_numpy(dtype="datetime64[us]")
    known = ~np.isnat(start)
    if not known.any():
        return np.zeros(len(frame), dtype=bool)
    cutoff = start[known].max() - STALE_AFTER.to_timedelta64()
    active = frame["is_active"].fillna(False).to_numpy(dtype=bool)
    stale: np.ndarray = active & known & (start < cutoff)
    return stale


def newest_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by start time, newest first (unknown start last); ties by id for a stable order."""
    if frame.empty:
        return frame
    id_rank = np.empty(len(frame), dtype=np.int64)
    id_rank[np.asarray(frame.index.argsort())] = np.arange(len(frame))
    times = frame["start_time"].to_numpy(dtype="datetime64[us]").view(np.int64)  # NaT is the minimum
    order = np.lexsort((id_rank, times))[::-1]
    if (order == np.arange(len(order))).all():
        return frame  # already in order (a loaded cache): no copy of a million rows
    return frame.iloc[order]
