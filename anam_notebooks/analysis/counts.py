"""Sessions reduced to counts: per time bucket, how many sessions each unit served and how many failed.

The window scan of `rank_suspects` runs only on these arrays (see `analysis.scan`): its cost
grows with units × buckets × draws, never with sessions. The few questions the reconciliation
of causes asks about individual sessions (is one unit inside another, how many failed sessions
do two candidates share, how many customers did a window hit) go through `SessionQueries`, so
another storage engine can answer the same questions without a DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

#: A unit as the analysis names it: (level, code), the column and the unit's index into
#: `LevelCounts.units`. The level "fleet" names a time window of the whole fleet instead; its
#: code is `first_bucket * buckets + last_bucket` (see `fleet_key`).
UnitKey = tuple[str, int]

FLEET = "fleet"


def fleet_key(first: int, last: int, buckets: int) -> UnitKey:
    """The key of a fleet-wide window covering buckets `first`..`last` (inclusive)."""
    return FLEET, int(first) * max(int(buckets), 1) + int(last)


def fleet_span(code: int, buckets: int) -> tuple[int, int]:
    """First and last bucket of a fleet-wide window key's code (the inverse of `fleet_key`)."""
    return divmod(int(code), max(int(buckets), 1))


@dataclass(frozen=True)
class LevelCounts:
    """One level (column) of units, counted per time bucket.

    Attributes
    ----------
    level
        The column, e.g. "engine_pod" or "tts_provider".
    units
        The unit labels as text, index = unit code (shape U).
    sessions, failures
        Ended sessions and failed sessions of unit u started in bucket b (shape U × B, int64).
        Sessions without a value in this column belong to no unit.
    """

    level: str
    units: np.ndarray
    sessions: np.ndarray
    failures: np.ndarray


@dataclass(frozen=True)
class FailureCounts:
    """Ended sessions with a start time, counted per time bucket, for the fleet and every level.

    Attributes
    ----------
    origin
        UTC start of bucket 0 (the earliest start, floored to `step`).
    step
        The bucket width (the `freq` of `rank_suspects`).
    buckets
        The number of buckets B; bucket b covers [origin + b·step, origin + (b+1)·step).
    fleet_sessions, fleet_failures
        Every counted session and failure per bucket (shape B, int64): the margins the scan's
        fleet-wide hour effects come from.
    levels
        Per column, its `LevelCounts`.
    """

    origin: pd.Timestamp
    step: pd.Timedelta
    buckets: int
    fleet_sessions: np.ndarray
    fleet_failures: np.ndarray
    levels: dict[str, LevelCounts]

    def start_of(self, bucket: int) -> pd.Timestamp:
        """The UTC start of `bucket` (bucket `buckets` is the end of the last one).

        Parameters
        ----------
        bucket : int
            A bucket index, 0 to `buckets`.

        Returns
        -------
        Timestamp
            ``origin + bucket * step``.

        Raises
        ------
        TypeError, ValueError
            When `bucket` is not a whole number.
        """
        return self.origin + int(bucket) * self.step


def count_sessions(bucket: np.ndarray, fail: np.ndarray, codes: dict[str, np.ndarray],
                   names: dict[str, np.ndarray], origin: pd.Timestamp, step: pd.Timedelta,
                   buckets: int, keep: np.ndarray | None = None) -> FailureCounts:
    """Count sessions and failures per (unit, bucket) for every level, in one pass per level.

    Parameters
    ----------
    bucket
        Each session's time bucket (int, 0 ≤ bucket < `buckets`).
    fail
        Whether each session failed (bool).
    codes, names
        Per level, each session's unit code (-1 for none) and the labels of the codes.
    origin, step, buckets
        The time grid (see `FailureCounts`).
    keep
        Optional mask of the sessions to count (the others are left out of every array).

    Returns
    -------
    FailureCounts

    Raises
    ------
    ValueError
        When a bucket is negative (numpy cannot count it).
    """
    size = max(int(buckets), 1)
    if keep is not None:
        bucket, fail = bucket[keep], fail[keep]
    failed = np.flatnonzero(fail)   # a few percent of sessions: count failures on those alone
    fleet_n = np.bincount(bucket, minlength=size)[:size].astype(np.int64)
    fleet_x = np.bincount(bucket[failed], minlength=size)[:size].astype(np.int64)
    levels = {}
    # Each session's bucket shifted by one row of buckets, once for every level: a level's
    # cell is then code * size + shifted (row 0 the sessions of no unit), two passes a level.
    shifted: dict[type[np.signedinteger], np.ndarray] = {}
    for level, code in codes.items():
        if keep is not None:
            code = code[keep]
        units = len(names[level])
        cells = (units + 1) * size
        wide = np.int32 if cells < 2 ** 31 else np.int64   # codes may be int8/int16: widened
        if wide not in shifted:
            shifted[wide] = np.add(bucket, size, dtype=wide)
        cell = np.multiply(code, size, dtype=wide)
        np.add(cell, shifted[wide], out=cell)   # in place: one array, not a temporary a step
        n = np.bincount(cell, minlength=cells)[size:cells].astype(np.int64)
        x = np.bincount(cell[failed], minlength=cells)[size:cells].astype(np.int64)
        levels[level] = LevelCounts(level, names[level], n.reshape(units, size), x.reshape(units, size))
    return FailureCounts(origin, step, int(buckets), fleet_n, fleet_x, levels)


class SessionQueries(Protocol):
    """The session-level questions the reconciliation of `rank_suspects` asks, and nothing more.

    The pandas implementation lives in `analysis.suspects`; a dataset engine answers the same
    questions with its own queries. Units are `UnitKey`s; a "fleet" key is every session whose
    bucket lies in its window.
    """

    def counts(self, exclude: tuple[UnitKey, ...] = ()) -> FailureCounts:
        """Counts of the sessions in none of the `exclude` units (all sessions when empty)."""
        ...

    def size(self, key: UnitKey) -> int:
        """How many counted sessions the unit holds."""
        ...

    def shared(self, inner: UnitKey, outer: UnitKey, window: tuple[int, int] | None = None) -> int:
        """How many counted sessions lie in both units (nesting: shared ≥ 95 % of `inner`),
        optionally only those started in buckets window[0]..window[1]."""
        ...

    def size_in(self, key: UnitKey, window: tuple[int, int]) -> int:
        """How many counted sessions of the unit started in buckets window[0]..window[1]."""
        ...

    def failed_shared(self, a: UnitKey, b: UnitKey) -> tuple[int, int, int]:
        """Failed sessions of `a`, of `b`, and of both."""
        ...

    def excess_p(self, key: UnitKey, removed: Sequence[UnitKey] = (),
                 window: tuple[int, int] | None = None) -> float:
        """One-sided exact p-value (stratified by time, hypergeometric per stratum) that the
        unit's sessions outside the `removed` units failed more than every session outside
        them in the same strata; with a `window`, only sessions started in its buckets."""
        ...

    def customers(self, key: UnitKey, first: int, last: int, failed_only: bool = True) -> int:
        """Distinct customers (client label and API key pairs) among the unit's sessions in
        buckets `first`..`last`; only failed sessions when `failed_only`."""
        ...
