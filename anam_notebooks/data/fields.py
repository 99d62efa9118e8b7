"""Record fields → Arrow arrays, tolerant of hostile input: a wrong-typed value becomes null
and is reported once per kind as a `MalformedRecordWarning`, never an exception."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_INT_TYPES = {int, type(None)}
_OBJECT_TYPES = {dict, type(None)}


class MalformedRecordWarning(UserWarning):
    """A record or field had the wrong shape; the value became null and the rest was kept."""


class Problems:
    """Collects malformed fields per (field, problem), so each kind warns once with example ids."""

    def __init__(self) -> None:
        self.examples: dict[tuple[str, str, str], list[str]] = {}
        self.counts: dict[tuple[str, str, str], int] = {}

    def add(self, field: str, record_id: str, problem: str = "has the wrong type",
            outcome: str = "set to null") -> None:
        key = (field, problem, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        examples = self.examples.setdefault(key, [])
        if len(examples) < 5:
            examples.append(record_id)

    def emit(self, what: str) -> None:
        for (field, problem, outcome), count in self.counts.items():
            examples = self.examples[(field, problem, outcome)]
            shown = ", ".join(repr(shorten(i)) for i in examples)
            more = f" and {count - len(examples)} more" if count > len(examples) else ""
            warnings.warn(f"{what}: {field} {problem} in {count} record(s) ({shown}{more}); {outcome}",
                          MalformedRecordWarning, stacklevel=3)


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def string_array(values: Sequence[Any], field: str, ids: Sequence[str], problems: Problems) -> pa.Array:
    """A list of str/None as an Arrow string array; other types become null and are reported."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
        cleaned: list[str | None] = []
        for record_id, value in zip(ids, values):
            if value is None:
                cleaned.append(None)
            elif not isinstance(value, str):
                problems.add(field, record_id)
                cleaned.append(None)
            else:
                cleaned.append(_encodable(value, field, record_id, problems))
        return pa.array(cleaned, type=pa.string())


def _encodable(value: str, field: str, record_id: str, problems: Problems) -> str:
    """Lone surrogates cannot be stored as UTF-8: escape them visibly rather than fail."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        problems.add(field, record_id, "is not valid unicode", "kept with backslash escapes")
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def int_array(values: Sequence[Any], field: str, ids: Sequence[str], problems: Problems) -> pa.Array:
    """Whole numbers (an integral float is accepted) → int64; anything else null + warning."""
    try:
        if set(map(type, values)) <= _INT_TYPES:  # Arrow would silently truncate 1.5
            return pa.array(values, type=pa.int64())
    except (pa.ArrowTypeError, pa.ArrowInvalid, OverflowError):
        pass
    cleaned: list[int | None] = []
    for record_id, value in zip(ids, values):
        if value is None:
            cleaned.append(None)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()) or not (-(2**63) <= value < 2**63):
            problems.add(field, record_id)
            cleaned.append(None)
        else:
            cleaned.append(int(value))
    return pa.array(cleaned, type=pa.int64())


def bool_array(values: Sequence[Any], field: str, ids: Sequence[str], problems: Problems) -> pa.Array:
    try:
        return pa.array(values, type=pa.bool_())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        cleaned: list[bool | None] = []
        for record_id, value in zip(ids, values):
            if value is not None and not isinstance(value, bool):
                problems.add(field, record_id)
                value = None
            cleaned.append(value)
        return pa.array(cleaned, type=pa.bool_())


def timestamp_array(values: Sequence[Any], field: str, ids: Sequence[str], problems: Problems) -> pa.Array:
    """ISO-8601 strings with any offset/precision → UTC microseconds; unparseable → null + warning."""
    strings = string_array(values, field, ids, problems)  # non-strings reported and nulled here
    try:
        return strings.cast(pa.timestamp("us", tz="UTC"))  # fast path: Arrow's ISO-8601 parser
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # nanoseconds, odd separators or garbage: pandas decides value by value
    present = strings.is_valid().to_numpy(zero_copy_only=False)
    parsed = to_utc(strings.to_pylist())
    for i in np.flatnonzero(present & np.asarray(parsed.isna())):
        problems.add(field, ids[int(i)], "is not an ISO-8601 timestamp", "set to NaT")
    return pa.array(parsed, type=pa.timestamp("us", tz="UTC"))


def to_utc(values: Sequence[Any]) -> pd.DatetimeIndex:
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    except (ValueError, OverflowError):
        # A mix the vectorised parser refuses as a whole: fall back to one value at a time.
        parsed = pd.DatetimeIndex([one_time(v) for v in values], tz="UTC")
    return parsed.as_unit("us") if parsed.unit != "us" else parsed


def one_time(value: str | None) -> pd.Timestamp:
    try:
        return pd.to_datetime(value, utc=True, format="ISO8601") if value is not None else pd.NaT
    except (ValueError, OverflowError):
        return pd.NaT


def categorical(array: pa.ChunkedArray) -> pd.Categorical:
    """Arrow strings → a Categorical with sorted categories (deterministic across merges)."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(pa.string())
    encoded = array.combine_chunks().dictionary_encode() if array.num_chunks else pa.array(
        [], pa.string()).dictionary_encode()
    categories = encoded.dictionary.to_pylist()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return sorted_categorical(codes, categories)


def sorted_categorical(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    order = sorted(range(len(categories)), key=categories.__getitem__)
    remap = np.empty(len(categories) + 1, dtype=np.int32)
    remap[-1] = -1
    remap[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index([categories[i] for i in order],
                                                                      dtype=object).astype(str),
                                     validate=False)
