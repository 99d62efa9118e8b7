"""`rank_suspects`: which units of any attribute fail more than their peers at the same time, and when.

Every unit (a pod, an SDK release, a TTS provider, a persona ...) is compared with the rest of
the fleet in the same time strata (a stratified exact test, on counts) and with its own history
in its worst window (`analysis.scan`, calibrated by simulation), corrected across every unit of
every attribute, and reconciled so that one cause gives one headline; the numbers are explained
in plain words in the `analysis` package docstring. The steps of one level are named:
`_whole_period` (the whole-period test), `_locate_and_test` (the window), `_rows`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data.checks import check_count, check_freq, check_names
from ..data.dataset import SessionDataset
from .coded import CodedSessions, coded_sessions, pair_keys
from .counts import (
    FLEET,
    FailureCounts,
    LevelCounts,
    SessionQueries,
    UnitKey,
    count_sessions,
    fleet_key,
    fleet_span,
)
from .failures import FailureSpec, failure_rule
from .outcomes import check_source, columns_of
from .scan import DRAWS, ScanResult, day_slots, repeats_daily, scan_level
from .stats import q_values, stratified_excess
from .wording import between, finding_sentence, in_window, unit_label

ENGINE_LEVELS = ("engine_pod", "engine_replicaset", "engine_version", "engine_region")
CLIENT_LEVELS = ("sdk_version", "browser", "os", "device_type", "client_label", "api_key_id")
PROVIDER_LEVELS = ("tts_provider", "tts_model", "llm_model")
PERSONA_LEVELS = ("persona_name", "avatar_version", "language_code")
# Every attribute a suspect; when two units hold the same sessions, the earlier one is named.
DEFAULT_LEVELS = ENGINE_LEVELS + CLIENT_LEVELS + PROVIDER_LEVELS + PERSONA_LEVELS
MIN_SESSIONS = 20
MIN_FAILURES = 3
# Time buckets are merged into strata expected to hold this many failures fleet-wide.
STRATUM_FAILURES = 100
# Memory kept for the positions of units asked about, and for masks of sessions left out.
MEMBER_BYTES = 384 * 2 ** 20
WITHOUT_BYTES = 96 * 2 ** 20
# A unit counts as inside a coarser engine unit when at least this share of its sessions are there.
NEST_SHARE = 0.95
# Who a customer is, for the impact of a finding: a client label and API key pair.
CUSTOMER_COLUMNS = ("client_label", "api_key_id")
# Two candidate headlines sharing this share of either's failures are not accepted in the same
# pass: the weaker is tested again once the stronger is allowed for.
SHARED_FAILURES = 0.10
# A window is a unit's own only when it also failed more than the rest of the fleet at the
# same time inside it, at this p-value (see `_rows`).
SAME_TIME = 0.05
# A fleet-wide window must show in at least two units of each of these levels (that have one).
SPREAD_LEVELS = ("engine_region", "engine_version", "tts_provider")
# A fleet-wide window is one unit's when the rest of the fleet's excess rate in it is below
# this share of that unit's.
CARRIED_SHARE = 0.25
# ... and only when the rest failed less than that unit's own rise predicts for it, at this
# p-value (otherwise the rest may be failing just like the unit: everyone at once).
LIKE_THE_UNIT_P = 0.01
# A unit inside another carries its excess when the rest of the other shows none at this
# p-value (a stricter bar than a finding's: a chance excess of the rest, found in one check of
# twenty at 5 %, must not keep a parent named for its child's outage).
NARROW_P = 0.01
# ... and keeps at least this share of the other's evidence (-log p), evidence beyond p = 1e-10
# counting as certain (so a pod holding all of its replicaset's outage is named even when the
# larger unit's window has a far smaller p-value).
EVIDENCE_KEPT = 0.5
CERTAIN_EVIDENCE = float(-np.log(1e-10))
# A fleet-wide window is one unit's when that unit served (nearly) every session in it and,
# outside it, failed more than the rest of the fleet at the same time at this p-value (at
# 1e-3, 87 sessions of a version before it took over, failing 13 % against 4 %, p = 0.003,
# were not enough to tell a 2,000-session week's failing version from the whole fleet).
SOLE_UNIT_P = 1e-2
MAX_PASSES = 8
# The q-values' correction over every unit of every level: Benjamini–Yekutieli, whose bound
# holds however the tests depend on each other (units share sessions, and the units of one
# attribute split them). Benjamini–Hochberg asks a table of 100 units for p-values about 5
# times larger. Measured on the power table's 62 main cells it found more in 16 and fewer in 2
# (fleet-wide outages a unit took from the fleet), and it let marginal headlines (q of 1e-3 to
# 5e-3: a leftover window of a fleet with a daily cycle, a unit failing a little more for four
# hours) lead over the real outage in 2 of 20 weeks with a daily cycle (none with this one).
FDR_METHOD = "by"
# Headlines with a q-value below this are listed before the other headlines (the threshold
# the notebooks and `suspect_findings` use).
STRONG_Q = 0.01
MAX_CAUSES = 8

_SUSPECT_COLUMNS = {
    "level": "string", "unit": "string", "family": "string", "sessions": "int64",
    "failures": "int64", "rate": "float64", "baseline": "float64", "expected": "float64",
    "lift": "float64", "p_value": "float64", "p_whole": "float64", "p_window": "float64",
    "q_value": "float64",
    "window_start": "datetime64[ns, UTC]", "window_end": "datetime64[ns, UTC]",
    "window_sessions": "int64", "window_failures": "int64", "window_rate": "float64",
    "window_baseline": "float64", "window_hours": "float64", "excess_failures": "float64",
    "customers": "Int64", "region": "string", "parent": "string",
    "explained_by": "string", "flagged": "bool", "finding": "string",
}


def family_of(column: str) -> str:
    """Which family an attribute belongs to: "engine", "client", "provider", "persona", "fleet"
    (a fleet-wide window) or "other"."""
    if column == FLEET:
        return FLEET
    for name, members in (("engine", ENGINE_LEVELS), ("client", CLIENT_LEVELS + ("user_agent",)),
                          ("provider", PROVIDER_LEVELS),
                          ("persona", PERSONA_LEVELS + ("persona_id", "avatar_key", "persona_type"))):
        if column in members:
            return name
    return "other"


# Memory kept for the counts of sessions left out (per set of units left out), so a set
# differing from one counted before by a unit costs that unit's sessions only.
LEFT_OUT_BYTES = 64 * 2 ** 20


@dataclass
class _Sessions:
    """Ended sessions with a start time, reduced to arrays: time bucket, stratum, failed, unit
    codes, and the customer (client label and API key) of each; the pandas answer to the
    `SessionQueries` the reconciliation asks (see `analysis.counts`).

    A unit's sessions are held as sorted positions (`members`, int32, found when first asked
    and kept within a memory budget), so most questions cost the size of the units asked
    about, not of the fleet.
    """

    bucket: np.ndarray
    stratum: np.ndarray
    fail: np.ndarray
    origin: pd.Timestamp
    step: pd.Timedelta
    buckets: int
    codes: dict[str, np.ndarray]
    names: dict[str, np.ndarray]
    customer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _bucket_bounds: np.ndarray | None = None
    _members: OrderedDict[UnitKey, np.ndarray] = field(default_factory=OrderedDict)
    _member_bytes: int = 0
    _full: FailureCounts | None = None
    _left_out: OrderedDict[frozenset[UnitKey], FailureCounts] = field(default_factory=OrderedDict)
    _left_out_bytes: int = 0
    _bucket_strata: np.ndarray | None = None
    _stratum_totals: tuple[np.ndarray, np.ndarray] | None = None
    _stratum_bounds: np.ndarray | None = None
    _failed: np.ndarray | None = None
    _failed_orders: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _without: dict[frozenset[UnitKey], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict)
    _excess: dict[tuple[UnitKey, frozenset[UnitKey], tuple[int, int] | None], float] = field(
        default_factory=dict)
    _spreads: dict[tuple[UnitKey, str], np.ndarray] = field(default_factory=dict)
    scans: dict[UnitKey, tuple[Any, Any]] = field(default_factory=dict)   # see _locate_and_test
    # Each bucket's place in the day when the fleet fails with a daily cycle (`_sessions`).
    cycle_slots: np.ndarray | None = None

    def spread(self, key: UnitKey, level: str) -> np.ndarray:
        """Sessions of the unit (not a fleet window) per unit of `level`: its row of the two
        levels' cross table, cached per unit and level. One pass over the unit's sessions
        (its positions when kept, else a look at its level's codes), not over every pair."""
        asked = (key, level)
        row = self._spreads.get(asked)
        if row is None:
            at = self._members.get(key)
            values = self.codes[level][self.codes[key[0]] == key[1] if at is None else at]
            # Codes shifted by one: "no unit" (-1) counts in slot 0, dropped after.
            row = np.bincount(values.astype(np.intp) + 1, minlength=len(self.names[level]) + 1)[1:]
            self._spreads[asked] = row
        return row

    def start_of(self, bucket: int) -> pd.Timestamp:
        return self.origin + bucket * self.step

    def bucket_strata(self) -> np.ndarray:
        """The stratum of each time bucket (strata are runs of whole buckets; cached)."""
        if self._bucket_strata is None:
            strata = np.zeros(max(self.buckets, 1), dtype=np.int64)
            strata[self.bucket] = self.stratum
            self._bucket_strata = np.maximum.accumulate(strata)
        return self._bucket_strata

    def name(self, key: UnitKey) -> str:
        """How the unit is named in sentences ("pod anam-engine-…", "the whole fleet …")."""
        if key[0] == FLEET:
            first, last = fleet_span(key[1], self.buckets)
            return f"the whole fleet {between(self.start_of(first), self.start_of(last + 1))}"
        return unit_name(key[0], str(self.names[key[0]][key[1]]))

    def _bounds(self) -> np.ndarray:
        """Where each bucket's sessions start (the sessions are in time order), and the end."""
        if self._bucket_bounds is None:
            self._bucket_bounds = np.searchsorted(self.bucket, np.arange(max(self.buckets, 1) + 1))
        return self._bucket_bounds

    def _positions(self, start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop, dtype=np.int32 if len(self.bucket) < 2 ** 31 else np.int64)

    def members(self, key: UnitKey) -> np.ndarray:
        """Sorted positions of the unit's sessions (a "fleet" key: every session in its window).

        A unit's positions are found by one pass over its level's codes when first asked, and
        kept while those kept stay under MEMBER_BYTES (least recently asked dropped first); a
        fleet window's are a range (the sessions are in time order). Only the units the
        reconciliation asks about are ever found, a few of the fleet's."""
        level, code = key
        if level == FLEET:
            at = self.window_slice(*fleet_span(code, self.buckets))
            return self._positions(at.start, at.stop)
        found = self._members.get(key)
        if found is not None:
            self._members.move_to_end(key)
            return found
        found = np.flatnonzero(self.codes[level] == code)
        found = found.astype(np.int32) if len(self.bucket) < 2 ** 31 else found
        self._members[key] = found
        self._member_bytes += found.nbytes
        while self._member_bytes > MEMBER_BYTES and len(self._members) > 1:
            _, dropped = self._members.popitem(last=False)
            self._member_bytes -= dropped.nbytes
        return found

    def holds(self, key: UnitKey, positions: np.ndarray) -> np.ndarray:
        """Whether each of the sessions at `positions` belongs to the unit."""
        level, code = key
        if level == FLEET:
            first, last = fleet_span(code, self.buckets)
            return (self.bucket[positions] >= first) & (self.bucket[positions] <= last)
        return self.codes[level][positions] == code

    def union(self, keys: Sequence[UnitKey]) -> np.ndarray:
        """Sorted positions of the sessions in any of the units."""
        if not keys:
            return np.zeros(0, dtype=np.int64)
        if len(keys) == 1:
            return self.members(keys[0])
        held = np.zeros(len(self.bucket), dtype=bool)   # a mask: no sort, no hash of positions
        for key in keys:
            held[self.members(key)] = True
        return np.flatnonzero(held)

    def without(self, keys: Sequence[UnitKey]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the sessions outside every unit of `keys`: a mask of the sessions left out, and
        the sessions and failures left per stratum (cached: asked once per pass and candidate)."""
        key = frozenset(keys)
        if key not in self._without:
            if len(self._without) * len(self.bucket) > WITHOUT_BYTES:   # one mask byte a session
                self._without.clear()
            size = int(self.stratum.max()) + 1 if len(self.stratum) else 1
            if self._stratum_totals is None:
                self._stratum_totals = (np.bincount(self.stratum, minlength=size),
                                        np.bincount(self.stratum[self.fail], minlength=size))
            totals = self._stratum_totals
            if self._stratum_bounds is None:   # where each stratum's sessions start (time order)
                self._stratum_bounds = np.searchsorted(self.stratum, np.arange(size + 1))
            # From the largest set kept that this one holds (a pass's headlines, before one
            # more unit is left out): its mask copied, then each further unit's sessions not
            # yet left out are marked and taken off the counts per stratum (found by binary
            # search: the strata are runs of positions). What is left is never counted again.
            base = max((k for k in self._without if k <= key), key=len, default=frozenset())
            if base:
                before, n, x = self._without[base]
                out = before.copy()
            else:
                before, (n, x) = None, totals
                out = np.zeros(len(self.bucket), dtype=bool)
            empty = before is None
            for unit in sorted(key - base):
                at = self.members(unit)
                fresh = at if empty else at[~out[at]]
                out[fresh] = True
                empty = False
                n = n - np.diff(np.searchsorted(fresh, self._stratum_bounds.astype(fresh.dtype)))
            # Failures through the failed sessions alone (a few percent of the fleet).
            failed = self._failed_positions()
            gone = out[failed] if before is None else out[failed] & ~before[failed]
            x = x - np.bincount(self.stratum[failed[gone]], minlength=size)
            self._without[key] = (out, n, x.astype(np.int64))
        return self._without[key]

    def window_slice(self, first: int, last: int) -> slice:
        """The positions of the sessions started in buckets `first`..`last`, as a slice (the
        sessions are in time order)."""
        bounds = self._bounds()
        first, last = min(max(first, 0), self.buckets), max(min(last, self.buckets - 1) + 1, 0)
        return slice(int(bounds[first]), int(bounds[max(last, first)]))

    def in_window(self, first: int, last: int) -> np.ndarray:
        """Positions of the sessions started in buckets `first`..`last`."""
        at = self.window_slice(first, last)
        return self._positions(at.start, at.stop)

    def clip(self, positions: np.ndarray, first: int, last: int) -> np.ndarray:
        """Of sorted `positions`, those started in buckets `first`..`last` (a slice: the
        sessions are in time order, so a window is a range of positions)."""
        at = self.window_slice(first, last)
        # The bounds in the positions' own type: a Python int would have numpy cast the whole
        # array to int64 first (a pass over every position, not a binary search).
        bounds = np.array([at.start, at.stop], dtype=positions.dtype)
        lo, hi = np.searchsorted(positions, bounds)
        return positions[lo:hi]

    # -- SessionQueries

    def counts(self, exclude: tuple[UnitKey, ...] = ()) -> FailureCounts:
        if self._full is None:
            self._full = count_sessions(self.bucket, self.fail, self.codes, self.names,
                                        self.origin, self.step, self.buckets)
        if not exclude:
            return self._full
        key = frozenset(exclude)
        less = self._left_out.get(key)
        if less is None:
            less = self._count_left_out(key)
            self._left_out[key] = less
            self._left_out_bytes += _nbytes(less)
            while self._left_out_bytes > LEFT_OUT_BYTES and len(self._left_out) > 1:
                _, dropped = self._left_out.popitem(last=False)
                self._left_out_bytes -= _nbytes(dropped)
        else:
            self._left_out.move_to_end(key)
        full = self._full
        return FailureCounts(full.origin, full.step, full.buckets,
                             full.fleet_sessions - less.fleet_sessions,
                             full.fleet_failures - less.fleet_failures,
                             {level: LevelCounts(level, counts.units,
                                                 counts.sessions - less.levels[level].sessions,
                                                 counts.failures - less.levels[level].failures)
                              for level, counts in full.levels.items()})

    def _count_left_out(self, keys: frozenset[UnitKey]) -> FailureCounts:
        """Counts of the sessions in any of the units `keys`. From the counts of a set of units
        counted before that this set holds (or that holds this set) when one is kept: only the
        sessions of the units that differ are counted (a headline added or left out again),
        not every session of the set."""
        cost = sum(self.size(k) for k in keys)   # counting every session of the set
        best: tuple[FailureCounts, frozenset[UnitKey], frozenset[UnitKey], int] | None = None
        for known, counted in self._left_out.items():
            if known <= keys:   # add the sessions of the units it lacks (outside its units)
                differ, others, sign = keys - known, known, 1
            elif known >= keys:   # take away the sessions only its extra units hold
                differ, others, sign = known - keys, keys, -1
            else:
                continue
            extra = sum(self.size(k) for k in differ)
            if extra < cost:
                best, cost = (counted, differ, others, sign), extra
        if best is None:
            return self._count_at(self.union(list(keys)))
        counted, differ, others, sign = best
        at = self.union(list(differ))
        if others:
            held = np.zeros(len(at), dtype=bool)
            for other in others:
                held |= self.holds(other, at)
            at = at[~held]
        delta = self._count_at(at)
        return FailureCounts(counted.origin, counted.step, counted.buckets,
                             counted.fleet_sessions + sign * delta.fleet_sessions,
                             counted.fleet_failures + sign * delta.fleet_failures,
                             {level: LevelCounts(level, part.units,
                                                 part.sessions + sign * delta.levels[level].sessions,
                                                 part.failures + sign * delta.levels[level].failures)
                              for level, part in counted.levels.items()})

    def _count_at(self, at: np.ndarray) -> FailureCounts:
        """Counts of the sessions at positions `at`."""
        return count_sessions(self.bucket[at], self.fail[at], {k: v[at] for k, v in self.codes.items()},
                              self.names, self.origin, self.step, self.buckets)

    def size(self, key: UnitKey) -> int:
        if key[0] == FLEET:
            return len(self.members(key))
        return int(self.counts().levels[key[0]].sessions[key[1]].sum())   # no positions needed

    def excess_p(self, key: UnitKey, removed: Sequence[UnitKey] = (),
                 window: tuple[int, int] | None = None) -> float:
        asked = (key, frozenset(removed), window)   # asked again in later passes: kept
        if asked not in self._excess:
            self._excess[asked] = _excess_p(self, self.members(key), removed, window, key)
        return self._excess[asked]

    def shared(self, inner: UnitKey, outer: UnitKey, window: tuple[int, int] | None = None) -> int:
        if FLEET not in (inner[0], outer[0]):
            if window is None:
                return int(self.spread(inner, outer[0])[outer[1]])
            # In a window: the outer unit's sessions there (a slice of its sorted positions;
            # the outer unit is the one being asked about, whose level is sorted already).
            inner, outer = outer, inner
        at = self.members(inner)
        if window is not None:
            at = self.clip(at, window[0], window[1])
        return int(self.holds(outer, at).sum())

    def overlap_bound(self, a: UnitKey, b: UnitKey) -> int:
        """At most how many sessions two units share: per bucket, the smaller of their
        counts (exact for a fleet window against a unit: the unit's sessions in it)."""
        def per_bucket(key: UnitKey) -> np.ndarray:
            if key[0] == FLEET:
                first, last = fleet_span(key[1], self.buckets)
                inside = np.zeros(self.buckets, dtype=np.int64)
                inside[first:last + 1] = self.counts().fleet_sessions[first:last + 1]
                return inside
            return self.counts().levels[key[0]].sessions[key[1]]
        return int(np.minimum(per_bucket(a), per_bucket(b)).sum())

    def size_in(self, key: UnitKey, window: tuple[int, int]) -> int:
        """Sessions of the unit started in buckets window[0]..window[1]."""
        if key[0] == FLEET:
            return self.shared(key, key, window)
        return int(self.counts().levels[key[0]].sessions[key[1], window[0]:window[1] + 1].sum())

    def failed_shared(self, a: UnitKey, b: UnitKey) -> tuple[int, int, int]:
        fa = self.failed_members(a)
        return len(fa), len(self.failed_members(b)), int(self.holds(b, fa).sum())

    def failed_members(self, key: UnitKey) -> np.ndarray:
        """Sorted positions of the unit's failed sessions, through the failed sessions alone
        (a few percent of the fleet): one small sort per level, slices after."""
        failed = self._failed_positions()
        level, code = key
        if level == FLEET:
            first, last = fleet_span(code, self.buckets)
            return self.clip(failed, first, last)
        if level not in self._failed_orders:
            values = self.codes[level][failed]
            order = np.argsort(values, kind="stable")
            self._failed_orders[level] = (failed[order], np.searchsorted(values[order],
                                                                         np.arange(len(self.names[level]) + 1)))
        positions, bounds = self._failed_orders[level]
        return positions[bounds[code]:bounds[code + 1]]   # stable sort: ascending positions

    def _failed_positions(self) -> np.ndarray:
        """Sorted positions of the failed sessions (cached)."""
        if self._failed is None:
            self._failed = np.flatnonzero(self.fail).astype(self._positions(0, 0).dtype)
        return self._failed

    def customers(self, key: UnitKey, first: int, last: int, failed_only: bool = True) -> int:
        at = self.failed_members(key) if failed_only else self.members(key)
        at = self.clip(at, first, last)
        who = self.customer[at]
        return int(len(np.unique(who[who >= 0])))


def _nbytes(counts: FailureCounts) -> int:
    return counts.fleet_sessions.nbytes * 2 + sum(level.sessions.nbytes * 2
                                                  for level in counts.levels.values())


def _strata(bucket: np.ndarray, fail: np.ndarray, stratum_failures: int) -> np.ndarray:
    """Stratum of each session: consecutive time buckets merged until a stratum holds enough
    sessions to expect `stratum_failures` failures at the fleet's overall rate."""
    if not len(bucket) or not stratum_failures or not fail.any():
        return bucket.copy()
    target = int(np.ceil(stratum_failures * len(fail) / fail.sum()))
    per_bucket = np.bincount(bucket)
    before = np.cumsum(per_bucket) - per_bucket
    sid = before // target
    last = sid.max()
    if last and per_bucket[sid == last].sum() < target:
        sid[sid == last] = last - 1
    return sid[bucket]


def _sessions(coded: CodedSessions, step: pd.Timedelta, stratum_failures: int) -> _Sessions:
    """The ranking's session arrays from the coded sessions: time buckets of `step` from the
    earliest start (floored to `step`), and the strata."""
    step_ns = int(step.value)
    if len(coded):
        origin_ns = int(coded.start_ns.min()) // step_ns * step_ns
        bucket = (coded.start_ns - origin_ns) // step_ns
    else:
        origin_ns, bucket = 0, np.zeros(0, np.int64)
    origin = pd.Timestamp(origin_ns, tz="UTC")
    n_buckets = int(bucket.max()) + 1 if len(bucket) else 0
    small = np.int32 if n_buckets < 2 ** 31 else np.int64   # 4 bytes a session, not 8
    bucket = bucket.astype(small)
    # Sessions in time order: a window is then a range of positions, and a unit's sessions in
    # a window a slice of its sorted positions (one radix sort of the buckets, once).
    order = np.argsort(bucket, kind="stable")
    bucket, fail, customer = bucket[order], coded.fail[order], coded.customer[order]
    codes = {}
    for level in list(coded.codes):   # one level at a time: the unsorted copy is let go
        codes[level] = coded.codes.pop(level)[order]
    del order
    slots = day_slots(origin_ns, step_ns, n_buckets)
    if repeats_daily(np.bincount(bucket, minlength=n_buckets), np.bincount(bucket[fail], minlength=n_buckets),
                     slots):
        # A fleet failing more at some hours of every day: each hour is a stratum of its own
        # (merged strata of a day would compare a unit busy at the worst hours, a region or a
        # version rolled out then, with the rest at other hours), and the scan allows for the
        # cycle.
        stratum = bucket.copy()
    else:
        stratum, slots = _strata(bucket, fail, stratum_failures).astype(small), None
    return _Sessions(bucket, stratum, fail, origin, step, n_buckets, codes, coded.names, customer,
                     cycle_slots=slots)


def _modal(child: np.ndarray, parent: np.ndarray, n_child: int, n_parent: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """For each child unit, the parent unit holding most of its sessions and that share."""
    modal, share = np.full(n_child, -1), np.zeros(n_child)
    cells = (n_child + 1) * (n_parent + 1)
    if n_parent and cells <= 4_000_000:
        # Sessions per (child, parent) counted in one table, codes shifted by one (row and
        # column 0: no unit): no sort. Ties go to the first parent, as np.unique's order did.
        table = np.bincount(pair_keys(child, parent, n_child, n_parent), minlength=cells)
        table = table.reshape(n_child + 1, n_parent + 1)[1:]
        totals, table = table.sum(axis=1), table[:, 1:]
        best = table.argmax(axis=1)
        top = table[np.arange(n_child), best]
        has = top > 0
        modal[has] = best[has]
        share[has] = top[has] / totals[has]
        return modal, share
    child, parent = child.astype(np.int64), parent.astype(np.int64)   # codes may be int8/int16
    ok = (child >= 0) & (parent >= 0)
    if not ok.any() or not n_parent:
        return modal, share
    key, counts = np.unique(child[ok] * n_parent + parent[ok], return_counts=True)
    c, p = key // n_parent, key % n_parent
    order = np.lexsort((-counts, c))
    first = order[np.r_[True, c[order][1:] != c[order][:-1]]]
    totals = np.bincount(child[child >= 0], minlength=n_child)
    modal[c[first]] = p[first]
    share[c[first]] = counts[first] / totals[c[first]]
    return modal, share


@dataclass(frozen=True)
class _Whole:
    """The whole-period test of every unit of one level (arrays indexed by unit code)."""

    sessions: np.ndarray
    failures: np.ndarray
    baseline: np.ndarray
    p_value: np.ndarray
    z: np.ndarray


def _per_stratum(per_bucket: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Counts per bucket (last axis) summed per stratum; strata are runs of whole buckets,
    numbered in time order (`_Sessions.bucket_strata`), so each is a slice of a running sum."""
    size = int(strata[-1]) + 1 if len(strata) else 1
    ids = np.arange(size)
    running = np.cumsum(per_bucket[..., :len(strata)], axis=-1, dtype=np.int64)
    running = np.concatenate([np.zeros((*running.shape[:-1], 1), np.int64), running], axis=-1)
    return (running[..., np.searchsorted(strata, ids, side="right")]
            - running[..., np.searchsorted(strata, ids, side="left")])


def _whole_period(s: _Sessions, counts: FailureCounts, col: str) -> _Whole:
    """Each unit against the rest of the fleet in the same time strata, over the whole period
    (a stratified exact test), on counts: sessions of headlines already found are left out
    of `counts`, so a cause already found neither inflates nor dilutes anyone else's excess."""
    level = counts.levels[col]
    strata = s.bucket_strata()
    n = _per_stratum(level.sessions, strata)                        # unit × stratum
    x = _per_stratum(level.failures, strata)
    pool_n = _per_stratum(counts.fleet_sessions, strata)
    pool_x = _per_stratum(counts.fleet_failures, strata)
    unit, stratum = np.nonzero(n)
    n_units = len(level.units)
    cell_n, cell_x = n[unit, stratum], x[unit, stratum]
    cell_pool_n, cell_pool_x = pool_n[stratum], pool_x[stratum]
    p_whole, z = stratified_excess(cell_n, cell_x, cell_pool_n, cell_pool_x, unit, n_units)
    rest_n = cell_pool_n - cell_n
    with np.errstate(divide="ignore", invalid="ignore"):
        rest_rate = np.where(rest_n > 0, (cell_pool_x - cell_x) / rest_n, np.nan)
        compared = np.bincount(unit, weights=np.where(rest_n > 0, cell_n, 0), minlength=n_units)
        baseline = np.bincount(unit, weights=np.nan_to_num(cell_n * rest_rate),
                               minlength=n_units) / compared
    return _Whole(n.sum(axis=1), x.sum(axis=1), baseline, p_whole, z)


def _locate_and_test(s: _Sessions, counts: FailureCounts, col: str, units: np.ndarray,
                     draws: int) -> ScanResult:
    """The worst window of each unit against its own history (fleet hour effects allowed for),
    tested by simulation (see `analysis.scan`); `col` "fleet" scans the whole fleet's history.

    A unit whose own counts and the fleet's are the same as when it was last scanned keeps
    that scan. The fleet's count too: the hour effects come from the rest of the fleet, and a
    headline left out of it (a version failing all week as it rolled out) changes every other
    unit's expectation, so a window found beside it is tested again without it.
    """
    slots = s.cycle_slots
    if col == FLEET:
        # The newest bucket is left out of the fleet's own history: in the last hour of an
        # export the failed sessions (short) have ended and many healthy ones not yet, so it
        # always looks worse (units are compared with the same hour of the rest of the fleet).
        n, x = counts.fleet_sessions.copy(), counts.fleet_failures.copy()
        n[-1:], x[-1:] = 0, 0
        return scan_level(n[None, :], x[None, :], n, x, draws=draws, level=FLEET, labels=[FLEET],
                          adjust=False, slots=slots)
    level = counts.levels[col]
    n, x = level.sessions[units], level.failures[units]
    fleet = hash((counts.fleet_sessions.tobytes(), counts.fleet_failures.tobytes(), draws))
    marks = [hash((n[i].tobytes(), x[i].tobytes(), fleet)) for i in range(len(units))]
    known = [s.scans.get((col, int(u)), (None, None)) for u in units]
    todo = np.array([i for i, (mark, _) in enumerate(known) if mark != marks[i]], dtype=np.int64)
    fields = ("llr", "first", "last", "observed", "expected", "sessions", "p_value")
    if len(todo):
        fresh = scan_level(n[todo], x[todo], counts.fleet_sessions, counts.fleet_failures,
                           draws=draws, level=col, labels=list(level.units[units[todo]]), slots=slots)
        for row, i in enumerate(todo):
            known[i] = (marks[i], tuple(getattr(fresh, f)[row] for f in fields))
            s.scans[(col, int(units[i]))] = known[i]
    values = [np.array([k[1][f] for k in known]) if len(known) else np.zeros(0) for f in range(len(fields))]
    return ScanResult(*values)


def _same_time_p(counts: FailureCounts, col: str, units: np.ndarray, scan: ScanResult) -> np.ndarray:
    """Per unit, the exact test (stratified by bucket) that it failed more than the rest of
    the fleet at the same time inside its window; 1 where there is no window or no rest."""
    if col == FLEET:
        return np.zeros(len(units))
    level = counts.levels[col]
    cells_n, cells_x, pool_n, pool_x, group = [], [], [], [], []
    for row, u in enumerate(units):
        if scan.first[row] < 0:
            continue
        inside = slice(int(scan.first[row]), int(scan.last[row]) + 1)
        cells_n.append(level.sessions[u, inside])
        cells_x.append(level.failures[u, inside])
        pool_n.append(counts.fleet_sessions[inside])
        pool_x.append(counts.fleet_failures[inside])
        group.append(np.full(len(cells_n[-1]), row))
    if not group:
        return np.ones(len(units))
    p, _ = stratified_excess(np.concatenate(cells_n), np.concatenate(cells_x), np.concatenate(pool_n),
                             np.concatenate(pool_x), np.concatenate(group), len(units))
    return p


def _rows(s: _Sessions, col: str, units: np.ndarray, whole: _Whole, scan: ScanResult,
          counts: FailureCounts) -> pd.DataFrame:
    """One row per tested unit: the whole-period test, the window and their combined p-value.

    The window counts as evidence only when the unit also failed more than the rest of the
    fleet at the same time inside it (p below SAME_TIME): a unit's own history can change for
    reasons of its own (a version's traffic moving between pods as a rollout drains them), and
    an excess over its own past that its neighbours shared that hour is not its own."""
    same_time = _same_time_p(counts, col, units, scan)
    fleet = col == FLEET
    found = scan.first >= 0
    first, last = scan.first.astype(np.int64), scan.last.astype(np.int64)
    p_window = np.where(same_time < SAME_TIME, scan.p_value.astype(float), 1.0)
    window_sessions = np.where(found, scan.sessions, 0).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        window_baseline = np.where(window_sessions > 0, scan.expected / np.maximum(window_sessions, 1), np.nan)
    if fleet:
        p_whole, z = np.ones(len(units)), np.zeros(len(units))
        codes = np.array([fleet_key(int(first[0]), int(last[0]), s.buckets)[1]], dtype=np.int64)
        names = np.array(["all sessions"], dtype=object)
        sessions = np.full(len(units), int(counts.fleet_sessions.sum()), dtype=np.int64)
        failures = np.full(len(units), int(counts.fleet_failures.sum()), dtype=np.int64)
        baseline = window_baseline.copy()
        # The fleet's window is its only test.
        p_value = p_window
    else:
        p_whole, z = whole.p_value[units].astype(float), whole.z[units].astype(float)
        codes, names = units.astype(np.int64), s.names[col][units]
        sessions, failures = whole.sessions[units], whole.failures[units]
        baseline = whole.baseline[units].astype(float)
        # One look at the whole period and one at the windows: Bonferroni over the two.
        p_value = np.minimum(1.0, 2 * np.minimum(p_whole, p_window))
    llr = scan.llr.astype(float)
    evidence = np.maximum.reduce([z * np.abs(z) / 2,
                                  -np.log(np.maximum(np.minimum(p_whole, p_window), 1e-300)),
                                  np.where(p_window < p_whole, llr, 0.0)])
    nat = np.iinfo(np.int64).min
    origin, step = pd.Timestamp(s.origin).as_unit("ns").value, pd.Timedelta(s.step).as_unit("ns").value
    starts = pd.DatetimeIndex(np.where(found, origin + first * step, nat).view("M8[ns]")).tz_localize("UTC")
    ends = pd.DatetimeIndex(np.where(found, origin + (last + 1) * step, nat).view("M8[ns]")).tz_localize("UTC")
    frame = pd.DataFrame({
        "level": col, "unit": names, "code": codes, "sessions": sessions, "failures": failures,
        "baseline": baseline, "p_value": p_value, "p_whole": p_whole, "p_window": p_window,
        "z": z, "evidence": evidence,
        "window_start": starts, "window_end": ends,
        "first": first, "last": last, "window_sessions": window_sessions,
        "window_failures": np.where(found, scan.observed, 0).astype(np.int64),
        "window_expected": np.where(found, scan.expected.astype(float), np.nan),
        "window_baseline": window_baseline,
    })
    return frame


def _level_table(s: _Sessions, col: str, min_sessions: int, counts: FailureCounts,
                 draws: int, only: int | None = None) -> pd.DataFrame:
    """Every unit of one level with enough sessions: its whole-period test, its worst window
    located and tested, as rows. `only` restricts the table to one unit."""
    if col == FLEET:
        units = np.zeros(1, dtype=np.int64)
        empty = np.zeros(1)
        whole = _Whole(empty.astype(np.int64), empty.astype(np.int64), empty, np.ones(1), empty)
        if not counts.fleet_failures.sum():
            return pd.DataFrame()
    else:
        whole = _whole_period(s, counts, col)
        # A unit holding every session is the fleet itself (its "fleet" row speaks for it).
        tested = (whole.sessions >= min_sessions) & (whole.sessions < counts.fleet_sessions.sum())
        if only is not None:
            tested &= np.arange(len(tested)) == only
        units = np.flatnonzero(tested)
        if not len(units):
            return pd.DataFrame()
    return _rows(s, col, units, whole, _locate_and_test(s, counts, col, units, draws), counts)


def _test_all(s: _Sessions, cols: list[str], min_sessions: int, min_failures: int, alpha: float,
              headlines: list[UnitKey], draws: int) -> pd.DataFrame:
    """Every unit of every level and the whole fleet, allowing for `headlines`: every other
    unit is tested on the sessions outside all headlines, each headline on the sessions
    outside the others."""
    clean = s.counts(tuple(headlines))
    tables = [t for t in (_level_table(s, col, min_sessions, clean, draws)
                          for col in [FLEET, *cols]) if len(t)]
    if not tables:
        return pd.DataFrame()
    out = pd.concat(tables, ignore_index=True)
    for level, code in headlines:
        counts = s.counts(tuple(k for k in headlines if k != (level, code)))
        if level == FLEET:
            own = _fleet_headline(s, code, counts, draws)
        else:
            own = _level_table(s, level, min_sessions, counts, draws, only=code)
        at = np.flatnonzero((out["level"] == level).to_numpy() & (out["code"] == code).to_numpy())
        if len(own):
            out = pd.concat([out.drop(index=out.index[at]), own], ignore_index=True)
    out["q_value"] = q_values(out["p_value"].to_numpy(dtype=float), method=FDR_METHOD)
    out["significant"] = (out["q_value"] < alpha) & (out["failures"] >= min_failures)
    return out


def _fleet_headline(s: _Sessions, code: int, counts: FailureCounts, draws: int) -> pd.DataFrame:
    """A fleet-wide headline tested again on the sessions outside the other headlines: the
    scan's p-value, reported for the headline's own window."""
    table = _level_table(s, FLEET, 0, counts, draws)
    if not len(table):
        return table
    first, last = fleet_span(code, s.buckets)
    n, x = counts.fleet_sessions, counts.fleet_failures
    inside = slice(first, last + 1)
    outside_n = n.sum() - n[inside].sum()
    rate = (x.sum() - x[inside].sum()) / outside_n if outside_n else np.nan
    expected = float(n[inside].sum() * rate)
    table.loc[0, ["code", "first", "last", "window_start", "window_end", "window_sessions",
                  "window_failures", "window_expected", "window_baseline", "baseline"]] = [
        code, first, last, s.start_of(first), s.start_of(last + 1), int(n[inside].sum()),
        int(x[inside].sum()), expected, rate, rate]
    return table


def _excess_p(s: _Sessions, unit: np.ndarray, removed: Sequence[UnitKey],
              window: tuple[int, int] | None = None, key: UnitKey | None = None) -> float:
    """Exact p-value that the sessions at positions `unit` failed more than the rest of the
    fleet in the same strata, both without the sessions of the `removed` units and, with a
    `window` (first, last bucket), only inside it; 1.0 when there is nothing to compare.
    `key`, the unit whose positions `unit` are, lets its counts stand in for a pass over them."""
    out, pool_n, pool_x = s.without(removed)
    size = len(pool_n)
    if window is None and key is not None and key[0] != FLEET:
        # The unit's sessions per stratum from its counts, less those left out (only the
        # left-out ones are gathered); its failures through its failed sessions alone.
        strata = s.bucket_strata()
        n = (_per_stratum(s.counts().levels[key[0]].sessions[key[1]], strata)
             - np.bincount(s.stratum[unit[out[unit]]], minlength=size))
        failed = s.failed_members(key)
        x = np.bincount(s.stratum[failed[~out[failed]]], minlength=size).astype(np.int64)
        if not n.any():
            return 1.0
    else:
        if window is not None:
            unit = s.clip(unit, window[0], window[1])
        unit = unit[~out[unit]]
        if window is not None:
            at = s.window_slice(*window)
            left = ~out[at]
            stratum, fail = s.stratum[at][left], s.fail[at][left]
            pool_n = np.bincount(stratum, minlength=size)
            pool_x = np.bincount(stratum[fail], minlength=size).astype(np.int64)
        if not len(unit):
            return 1.0
        stratum = s.stratum[unit]
        n = np.bincount(stratum, minlength=size)
        x = np.bincount(stratum[s.fail[unit]], minlength=size).astype(np.int64)
    used = n > 0
    return float(stratified_excess(n[used], x[used], pool_n[used], pool_x[used],
                                   np.zeros(int(used.sum()), np.int64), 1)[0][0])


def _span(s: _Sessions, window: tuple[Any, Any]) -> tuple[int, int] | None:
    """The window [start, end) as (first, last) bucket, or None for no window."""
    start, end = window
    if pd.isna(start) or pd.isna(end):
        return None
    first = int((pd.Timestamp(start) - s.origin) // s.step)
    last = int((pd.Timestamp(end) - s.origin) // s.step) - 1
    return first, last


def _narrowest(s: _Sessions, headlines: list[UnitKey], key: UnitKey, candidates: list[UnitKey],
               cols: list[str], alpha: float, windows: dict[UnitKey, tuple[Any, Any]],
               strength: dict[UnitKey, float] | None = None,
               strong: set[UnitKey] | None = None) -> UnitKey:
    """The unit inside `key` that carries all of its excess (a broken pod in its replicaset, a
    persona's only voice), followed down as far as it goes; `key` itself when there is none.

    A candidate counts as inside when NEST_SHARE of its sessions are in `key` (over the whole
    period, or inside the window where `key` was worst); it carries the excess when the rest
    of `key` without it shows none (p >= NARROW_P), over the whole period and inside the window,
    the sessions of `headlines` left out. Two units holding the same sessions are one: the
    earlier level is named. A fleet-wide window is never narrowed. With `strength` (-log p of
    each unit as tested in this pass), a candidate must also keep at least EVIDENCE_KEPT of
    `key`'s (up to CERTAIN_EVIDENCE): a rest that shows no excess because it has nobody to be
    compared with (a version's other replicasets, started once it served every session) is no
    sign that the candidate carries it all. With `strong` (the units at q < STRONG_Q in this
    pass), a unit among them is narrowed only to another among them: a clear finding is not
    handed to a unit inside it that is less clear than the evidence allows (a provider down
    for four night hours, when one LLM happened to be all of its traffic then, q = 0.02).
    """
    if key[0] == FLEET:
        return key
    top = min(strength.get(key, 0.0), CERTAIN_EVIDENCE) if strength is not None else 0.0
    clear = strong is not None and key in strong
    seen = {key}
    while True:
        size = s.size(key)
        during = _span(s, windows.get(key, (None, None)))
        inside = []
        for other in candidates:
            if other in seen or other[0] == FLEET:
                continue
            # The per-hour counts bound the overlap from above: most pairs are ruled out
            # without looking at a session.
            bound = s.overlap_bound(other, key)
            shared = s.shared(other, key) if bound >= NEST_SHARE * s.size(other) else bound
            if shared >= NEST_SHARE * s.size(other):
                if shared >= NEST_SHARE * size and cols.index(other[0]) > cols.index(key[0]):
                    continue   # the same sessions: the earlier level is named
                inside.append(other)
            elif during is not None and (bound < NEST_SHARE * size or s.shared(key, other) < NEST_SHARE * size):
                # Inside within the window: a provider that was all of a version's traffic
                # in the hours the version was worst (its other hours are not at issue); never
                # a unit holding `key` itself.
                there = s.size_in(other, during)
                if there >= MIN_SESSIONS and s.shared(other, key, during) >= NEST_SHARE * there:
                    inside.append(other)
        step = None
        for other in sorted(inside, key=lambda k: -s.failed_shared(k, k)[0]):
            if strength is not None and strength.get(other, 0.0) < EVIDENCE_KEPT * top:
                continue
            if clear and strong is not None and other not in strong:
                continue
            removed = (*headlines, other)
            if s.excess_p(key, removed) < NARROW_P:
                continue
            if during is not None and s.excess_p(key, removed, during) < NARROW_P:
                continue
            step = other
            break
        if step is None:
            return key
        seen.add(step)
        key = step


def _carries(s: _Sessions, headlines: list[UnitKey], a: UnitKey, b: UnitKey, alpha: float,
             windows: dict[UnitKey, tuple[Any, Any]]) -> bool:
    """Whether `b` carries `a`'s excess rather than the other way round: without `b`'s
    sessions `a` shows none (whole period and in its window), while `b` without `a`'s
    sessions still does (in its window, or over the whole period)."""
    # One inside the other is nesting, `_narrowest`'s question: without `b`, a unit inside
    # it trivially shows nothing.
    if s.shared(a, b) >= NEST_SHARE * s.size(a) or s.shared(b, a) >= NEST_SHARE * s.size(b):
        return False
    a_in, b_in = _span(s, windows.get(a, (None, None))), _span(s, windows.get(b, (None, None)))
    without_b, without_a = (*headlines, b), (*headlines, a)
    if s.excess_p(a, without_b) < alpha:
        return False
    if a_in is not None and s.excess_p(a, without_b, a_in) < alpha:
        return False
    if b_in is not None and s.excess_p(b, without_a, b_in) < alpha:
        return True
    return s.excess_p(b, without_a) < alpha


def _confirm(s: _Sessions, headlines: list[UnitKey], alpha: float,
             windows: dict[UnitKey, tuple[Any, Any]]) -> list[UnitKey]:
    """Headlines that still show an excess on their sessions outside every other headline,
    over the whole period or inside their window.

    Catches what comparing within time buckets cannot: a rollout ramping up inside the very
    hour a provider went down carries more of the outage's sessions than its bucket-mates.
    Fleet-wide windows stay (their comparison is the fleet's own history, not its strata).
    """
    kept = list(headlines)
    for key in reversed(headlines):
        others = [k for k in kept if k != key]
        if not others or key[0] == FLEET:
            continue
        elsewhere = tuple(others)
        if s.excess_p(key, elsewhere) < alpha:
            continue
        during = _span(s, windows.get(key, (None, None)))
        if during is not None and s.excess_p(key, elsewhere, during) < alpha:
            continue
        kept.remove(key)
    return kept


def _failed_overlap(s: SessionQueries, a: UnitKey, b: UnitKey) -> float:
    """The largest share of either unit's failures that the two units share."""
    fa, fb, shared = s.failed_shared(a, b)
    return shared / max(1, min(fa, fb))


def _carried_by_one_unit(counts: FailureCounts, key: UnitKey, cols: list[str], alpha: float
                         ) -> tuple[bool, UnitKey | None]:
    """Whether one unit of some level carries a fleet-wide window's excess: without that unit's
    sessions (the unit with most failures in the window beyond its own usual rate), the rest of
    the fleet no longer fails more in the window than outside it (Poisson tail p >= alpha),
    and it failed clearly less than that unit's own rise would make it fail (Poisson tail
    p < LIKE_THE_UNIT_P): a rest too small to tell is no evidence for the unit. A fleet-wide
    finding means every region, version and provider at once: when fewer than two of some
    level fail more in the window, it is not fleet-wide.

    The second value names the unit whose finding the window is, when the window is the life of
    one region, version or provider failing all of it (see `_life_in_window`). A unit that rose
    in a window of its longer life is left to its own evidence: the cause may lie inside it or
    across it (an avatar served by one provider)."""
    first, last = fleet_span(key[1], counts.buckets)
    inside = slice(first, last + 1)
    for col in [c for c in SPREAD_LEVELS if c in cols]:
        # Fleet-wide means in several regions, versions and providers at once.
        level = counts.levels[col]
        n_in, x_in = level.sessions[:, inside].sum(axis=1), level.failures[:, inside].sum(axis=1)
        n_out, x_out = level.sessions.sum(axis=1) - n_in, level.failures.sum(axis=1) - x_in
        life = _life_in_window(counts, inside, n_in, x_in, n_out, x_out)
        if life is not None:
            return True, (col, life)
        seen = (n_in >= MIN_SESSIONS) & (n_out > 0)
        if seen.sum() < 2:
            continue
        expected = n_in[seen] * np.maximum(x_out[seen], 0.5) / n_out[seen]
        rising = np.flatnonzero(seen)[stats.poisson.sf(x_in[seen] - 1, expected) < alpha]
        if len(rising) < 2:
            return True, None
    for col in cols:
        level = counts.levels[col]
        n_in, x_in = level.sessions[:, inside].sum(axis=1), level.failures[:, inside].sum(axis=1)
        n_out, x_out = level.sessions.sum(axis=1) - n_in, level.failures.sum(axis=1) - x_in
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = x_in - n_in * np.where(n_out > 0, x_out / np.maximum(n_out, 1), 0.0)
        # A unit holding (nearly) every session of the window is the fleet at that time.
        excess = np.where(n_in >= NEST_SHARE * counts.fleet_sessions[inside].sum(), -np.inf, excess)
        if not len(excess) or not np.isfinite(excess.max()):
            continue
        u = int(np.argmax(excess))
        rest_in_n = counts.fleet_sessions[inside].sum() - n_in[u]
        rest_in_x = counts.fleet_failures[inside].sum() - x_in[u]
        rest_out_n = counts.fleet_sessions.sum() - counts.fleet_sessions[inside].sum() - n_out[u]
        rest_out_x = counts.fleet_failures.sum() - counts.fleet_failures[inside].sum() - x_out[u]
        if rest_out_n <= 0 or rest_out_x <= 0 or n_in[u] <= 0 or rest_in_n <= 0:
            continue
        rest_expected = rest_in_n * rest_out_x / rest_out_n
        # The unit carries it only if the rest failed clearly less than the unit's own rise
        # predicts for it: a rest of a few sessions (a version serving 93 % of the window)
        # failing like the unit cannot tell "this unit" from "everyone".
        lift = x_in[u] / max(n_in[u] * x_out[u] / n_out[u], 0.5) if n_out[u] else np.inf
        if np.isfinite(lift) and stats.poisson.cdf(rest_in_x, rest_expected * lift) >= LIKE_THE_UNIT_P:
            continue
        if stats.poisson.sf(rest_in_x - 1, rest_expected) >= alpha:
            return True, None
        # Or the rest failed only a little more than usual next to that unit (a big fleet
        # makes any spill-over significant): under a quarter of the unit's excess rate. Not
        # for a unit of fewer than MIN_SESSIONS sessions in the window: 5 failed of 7 by
        # chance is a high rate, but no reason to call a window of everyone that unit's.
        if n_in[u] >= MIN_SESSIONS and (rest_in_x - rest_expected) / rest_in_n < CARRIED_SHARE * excess[u] / n_in[u]:
            return True, None
    return False, None


def _life_in_window(counts: FailureCounts, inside: slice, n_in: np.ndarray, x_in: np.ndarray,
                    n_out: np.ndarray, x_out: np.ndarray) -> int | None:
    """The unit (of one level, counted inside and outside a fleet-wide window) whose life the
    window is, if one's is: the unit failing most beyond the fleet's usual rate in the window,
    when NEST_SHARE of its sessions lie in it (a version rolled out as the window began, or
    retired as it ended) and either it served NEST_SHARE of the window too (the window's edges
    are its rollout and its retirement) or it failed beyond the rest of the fleet outside the
    window or beside it inside (p < SOLE_UNIT_P). An outage of everyone while one version ran
    longer than the window is not that version's life, nor one in which it failed like those
    beside it."""
    window_n, window_x = counts.fleet_sessions[inside].sum(), counts.fleet_failures[inside].sum()
    usual_n, usual_x = counts.fleet_sessions.sum() - window_n, counts.fleet_failures.sum() - window_x
    beyond = np.where(n_in >= MIN_SESSIONS, x_in - n_in * usual_x / max(usual_n, 1), -np.inf)
    if not len(beyond):
        return None
    top = int(np.argmax(beyond))
    if not beyond[top] > 0 or n_in[top] < NEST_SHARE * (n_in[top] + n_out[top]):
        return None
    if n_in[top] >= NEST_SHARE * window_n:
        return top   # the window is the unit and the unit the window: its rollout and retirement mark it
    outside_rate = max(usual_x - x_out[top], 0.5) / max(usual_n - n_out[top], 1)
    beside_n = window_n - n_in[top]
    beside_rate = max(window_x - x_in[top], 0.5) / max(beside_n, 1)
    own = ((n_out[top] >= MIN_SESSIONS
            and stats.poisson.sf(x_out[top] - 1, n_out[top] * outside_rate) < SOLE_UNIT_P)
           or (beside_n >= MIN_SESSIONS
               and stats.poisson.sf(x_in[top] - 1, n_in[top] * beside_rate) < SOLE_UNIT_P))
    return top if own else None


def _inside_outside(counts: FailureCounts, key: UnitKey) -> tuple[int, float, int, int]:
    """Sessions and failures counted inside a fleet-wide window, and what their rate outside it
    predicts inside (at least half a failure outside), with the sessions outside."""
    first, last = fleet_span(key[1], counts.buckets)
    n_in = int(counts.fleet_sessions[first:last + 1].sum())
    x_in = int(counts.fleet_failures[first:last + 1].sum())
    n_out, x_out = int(counts.fleet_sessions.sum()) - n_in, int(counts.fleet_failures.sum()) - x_in
    return n_in, n_in * max(x_out, 0.5) / n_out if n_out > 0 else np.nan, x_in, n_out


def _window_lift(counts: FailureCounts, key: UnitKey) -> float:
    """How many times its rate outside a fleet-wide window the counted sessions failed inside it."""
    n_in, expected, x_in, n_out = _inside_outside(counts, key)
    return x_in / expected if n_in and n_out > 0 else 1.0


def _fleet_excess_stands(s: _Sessions, counts: FailureCounts, key: UnitKey, out: pd.DataFrame,
                         draws: int, lift: float = 1.0) -> bool:
    """Whether the sessions counted still make a fleet-wide window of their own: the fleet's
    scan, run on them alone, finds a window overlapping it that is as strong as a fleet-wide
    headline must be (the q-value it would have among the units tested in `out`, below
    STRONG_Q: the scan's own calibration, since the window was chosen among every window and a
    plain inside-against-outside test of it would be too kind), or, too few to show it, they
    fail as the whole fleet did there (`lift` times their usual rate: no Poisson tail below
    LIKE_THE_UNIT_P says less)."""
    n_in, expected, x_in, n_out = _inside_outside(counts, key)
    if n_in < MIN_SESSIONS or n_out <= 0:
        return False
    first, last = fleet_span(key[1], counts.buckets)
    rest = _level_table(s, FLEET, 0, counts, draws)
    if len(rest) and int(rest["first"].iloc[0]) <= last and int(rest["last"].iloc[0]) >= first:
        p = out["p_value"].to_numpy(dtype=float, copy=True)
        at = np.flatnonzero((out["level"] == FLEET).to_numpy() & (out["code"] == key[1]).to_numpy())
        if len(at):
            p[at[0]] = float(rest["p_value"].iloc[0])
            if q_values(p, method=FDR_METHOD)[at[0]] < STRONG_Q:
                return True
    return bool(lift > 1 and stats.poisson.cdf(x_in, expected * lift) >= LIKE_THE_UNIT_P)


def _units_during(fleet: UnitKey, keys: list[UnitKey], windows: dict[UnitKey, tuple[Any, Any]]
                  ) -> list[UnitKey]:
    """The significant units whose own windows overlap a fleet-wide window. A fleet-wide
    finding must stand with them left out: several units failing at once (a pod and a
    provider, say) lift the whole fleet's rate too, yet each is a cause of its own."""
    start, end = windows[fleet]
    during = []
    for key in keys:
        if key[0] == FLEET:
            continue
        w_start, w_end = windows.get(key, (pd.NaT, pd.NaT))
        if pd.isna(w_start) or pd.isna(w_end) or (w_start < end and w_end > start):
            during.append(key)   # a unit failing all period (no window) overlaps every window
    return during


def _concurrent(s: _Sessions, fleet: UnitKey, keys: list[UnitKey], windows: dict[UnitKey, tuple[Any, Any]]
                ) -> list[UnitKey]:
    """`_units_during` a fleet-wide window, less the units that served (nearly) every session
    in it (the only version running then, or all but a handful): such a unit is the fleet at
    that time, and leaving it out would leave nothing to test."""
    span = fleet_span(fleet[1], s.buckets)
    size = s.size(fleet)
    # Nor a unit leaving fewer than MIN_SESSIONS of the window's sessions: nothing to test.
    every = min(NEST_SHARE * size, size - MIN_SESSIONS)
    return [k for k in _units_during(fleet, keys, windows) if s.size_in(k, span) < every]


def _sole_unit_cause(s: _Sessions, fleet: UnitKey, kept: list[UnitKey], keys: list[UnitKey]) -> bool:
    """Whether a fleet-wide window belongs to a significant unit that served (nearly) every
    session in it: outside the window, where other units ran beside it, that unit still failed
    more than they did at the same time (p < SOLE_UNIT_P, the window's sessions and the
    headlines already taken left out). A version failing all week looks fleet-wide in the days
    it ran alone; a fleet-wide outage in those days leaves the version no excess elsewhere."""
    span = fleet_span(fleet[1], s.buckets)
    every = NEST_SHARE * s.size(fleet)
    return any(key[0] != FLEET and s.size_in(key, span) >= every
               and s.excess_p(key, (*kept, fleet)) < SOLE_UNIT_P for key in keys)


def _choose_headlines(s: _Sessions, out: pd.DataFrame, previous: list[UnitKey],
                      cols: list[str], alpha: float, first: list[UnitKey] | None = None,
                      draws: int = DRAWS) -> list[UnitKey]:
    """Significant units taken strongest first; a unit sharing many failures with one taken (or
    waiting) in this pass waits for the next pass, where it is tested with that one allowed for.

    Before a unit is taken it is narrowed to the unit inside it carrying its excess, and
    handed to an overlapping candidate that carries its excess instead (`_carries`: "desktop"
    clients failing only through the provider that was down). Headlines already taken are
    narrowed again among the units significant now or in the first pass (`first`): the units
    inside a headline are not tested again once it is left out."""
    if out.empty or "significant" not in out.columns:
        return []
    sig = out[out["significant"]].copy()
    order = [FLEET, *cols]
    sig["rank"] = [order.index(level) for level in sig["level"]]
    # A fleet-wide window comes first: unless one unit carries it (then it is skipped), no unit
    # is to be blamed for it, however strong that unit's own evidence.
    sig["fleet"] = sig["level"] == FLEET
    sig = sig.sort_values(["fleet", "evidence", "rank"], ascending=[False, False, True], kind="stable")
    keys = [(str(level), int(code)) for level, code in zip(sig["level"], sig["code"])]
    windows = dict(zip(keys, zip(sig["window_start"], sig["window_end"])))
    strength = {(str(level), int(code)): -float(np.log(max(p, 1e-300))) for level, code, p in
                zip(out["level"], out["code"], out["p_value"].astype(float))}
    strong = {(str(level), int(code)) for level, code, q in
              zip(out["level"], out["code"], out["q_value"].astype(float)) if q < STRONG_Q}
    kept = [k for k in previous if k in keys]
    # A fleet-wide window taken while the unit that served all of it was not yet significant
    # (its excess elsewhere shows only once the window is left out) is that unit's.
    kept = [k for k in kept if k[0] != FLEET or not _sole_unit_cause(s, k, [o for o in kept if o != k], keys)]
    # Narrowed again with the other headlines left out: a headline taken while a concurrent
    # cause was still unknown may now narrow to the unit that carries it.
    inner = keys + [k for k in first or () if k not in keys]
    kept = list(dict.fromkeys(_narrowest(s, [o for o in kept if o != k], k, inner, cols, alpha, windows,
                                         strength, strong) for k in kept))
    fresh: list[UnitKey] = []
    waiting: list[UnitKey] = []
    for key in keys:
        if len(kept) + len(fresh) >= MAX_CAUSES:
            break
        if key in kept:
            continue
        if key[0] == FLEET:
            carried, carrier = _carried_by_one_unit(s.counts(tuple(kept)), key, cols, alpha)
            if carried:
                # The window is that unit's: it is taken in the window's place when significant
                # itself, before units that rose with it (a provider most of whose traffic a
                # failing version served then) can take its excess.
                if carrier not in keys:
                    continue
                key = carrier
            elif (_sole_unit_cause(s, key, kept, keys)
                  or not _fleet_excess_stands(s, s.counts(tuple(kept + _concurrent(s, key, keys, windows))), key,
                                              out, draws, _window_lift(s.counts(tuple(kept)), key))
                  or float(sig.loc[(sig["level"] == FLEET) & (sig["code"] == key[1]), "q_value"].min()) >= STRONG_Q):
                continue   # units' (alone or with the units failing at the same time), or not clear enough
        key = _narrowest(s, kept, key, inner, cols, alpha, windows, strength, strong)
        if key in kept or key in fresh:
            continue
        if key[0] != FLEET and any(k[0] != FLEET and s.shared(k, key) >= NEST_SHARE * s.size(k)
                                   for k in kept):
            continue   # it holds a headline already taken: that headline's excess, not a new one
        # A unit waits when it shares failures with one taken or waiting in this pass.
        if any(_failed_overlap(s, key, other) >= SHARED_FAILURES for other in fresh + waiting):
            waiting.append(key)
            continue
        if key[0] != FLEET:
            for other in keys:
                if other in (key, *kept, *fresh, *waiting) or other[0] == FLEET:
                    continue
                if any(_failed_overlap(s, other, taken) >= SHARED_FAILURES for taken in kept + fresh):
                    continue   # it holds a cause already taken: not a fresh one
                if _failed_overlap(s, key, other) >= SHARED_FAILURES and \
                        _carries(s, kept, key, other, alpha, windows):
                    key = other
                    break
        if key not in kept and key not in fresh:
            fresh.append(key)
    return kept + fresh


def rank_suspects(df: pd.DataFrame | SessionDataset, levels: str | Sequence[str] | None = None,
                  failures: FailureSpec = None, freq: str = "1h",
                  min_sessions: int = MIN_SESSIONS, min_failures: int = MIN_FAILURES,
                  alpha: float = 0.05, stratum_failures: int = STRATUM_FAILURES,
                  draws: int = DRAWS) -> pd.DataFrame:
    """Units of every attribute (engine, client, provider, persona) ranked by failure excess.

    Each unit is compared with the rest of the fleet over the same time buckets of `freq`
    over the whole period, and with its own history in its worst window (a scan calibrated by
    simulation; see the `analysis` package docstring for what each column means). The whole
    fleet is scanned too: an outage of everyone is a finding of level "fleet". One
    multiple-testing correction covers every unit of every level.

    Causes are found in passes: the strongest significant units become headlines; then every
    unit is tested again comparing like with like on the headlines found (a session of a bad
    SDK release is only compared with other sessions of that release at the same time), so a
    pod is not blamed for the SDK's failures, and two concurrent incidents do not hide each
    other. Passes repeat until the headlines settle. Each row says its impact: failed sessions
    beyond those expected (`excess_failures`) and distinct customers hit (`customers`).

    Parameters
    ----------
    df
        A sessions frame (from `sessions_frame` or `fetch_sessions`), or a `SessionDataset`.
    levels
        Columns whose values are the units; None for every column of `DEFAULT_LEVELS` the
        frame has. When two units hold the same sessions, the one of the earlier level is named.
    failures
        Which exit statuses count as failures (see `is_failure`).
    freq
        The time bucket of the comparisons and of the windows, a fixed pandas offset like "1h".
    min_sessions, min_failures
        A unit is tested with at least `min_sessions` ended sessions and flagged with at least
        `min_failures` failures.
    alpha
        The q-value below which a unit counts as significant.
    stratum_failures
        Time buckets are merged into strata expected to hold this many failures fleet-wide.
    draws
        Simulated histories per unit for the window's p-value (see `analysis.scan`); 0 skips
        the simulations (every window p-value is then 1: the whole-period test alone).

    Returns
    -------
    DataFrame
        One row per tested unit: headlines (`flagged`) first, those with q below 0.01
        first, largest lift over the rest of the fleet in their window first; then
        significant units explained by a headline (`explained_by`), then the rest, by
        p-value. `df.attrs` records the settings, passes and how many units were not tested.

    Raises
    ------
    ValueError
        For an unknown column, a bad `freq`, count or `alpha`, naming the value.
    TypeError
        When `df` is not a DataFrame or `failures` is not a valid rule.
    """
    source = check_source(df, ["exit_status", "start_time"])
    columns = columns_of(source)
    if levels is None:
        cols = [c for c in DEFAULT_LEVELS if c in columns]
        if not cols:
            raise ValueError("the frame has none of the default levels "
                             f"({', '.join(DEFAULT_LEVELS)}); name the columns with levels=")
    else:
        cols = check_names(columns, levels, "levels")
    step = check_freq(freq)
    min_sessions = check_count(min_sessions, "min_sessions")
    min_failures = check_count(min_failures, "min_failures")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be a number between 0 and 1, e.g. 0.05")
    failure_rule(failures)
    stratum_failures = check_count(stratum_failures, "stratum_failures")
    draws = check_count(draws, "draws")
    s = _sessions(coded_sessions(source, cols, failures, CUSTOMER_COLUMNS), step, stratum_failures)
    attrs: dict[str, Any] = {"freq": str(freq), "alpha": alpha, "min_sessions": min_sessions,
                             "stratum_failures": stratum_failures, "levels": list(cols),
                             "strata": int(len(np.unique(s.stratum))), "draws": draws,
                             "min_failures": min_failures, "sessions": int(len(s.bucket))}
    raw = _test_all(s, cols, min_sessions, min_failures, alpha, [], draws)
    out, headlines, passes = raw, [], 1
    if not raw.empty:
        headlines = _choose_headlines(s, raw, [], cols, alpha, draws=draws)
        first = [(str(lv), int(c)) for lv, c in zip(raw.loc[raw["significant"], "level"],
                                                     raw.loc[raw["significant"], "code"])]
        seen = [set(headlines)]
        while passes < MAX_PASSES and headlines:
            passes += 1
            tested = _test_all(s, cols, min_sessions, min_failures, alpha, headlines, draws)
            if tested.empty:   # the headlines hold every session: nothing is left to compare
                break
            out = tested
            chosen = _choose_headlines(s, out, headlines, cols, alpha, first, draws)
            if chosen == headlines or set(chosen) in seen:   # settled, or going round in a cycle
                break
            seen.append(set(chosen))
            headlines = chosen
        if out.empty:
            out, headlines = raw, []
        headlines = _confirm(s, headlines, alpha, {
            (str(level), int(code)): window for level, code, window in
            zip(out["level"], out["code"], zip(out["window_start"], out["window_end"]))})
    tested_units = int((raw["level"] != FLEET).sum()) if len(raw) else 0
    attrs.update(passes=passes, untested_units=int(sum(len(s.names[c]) for c in cols) - tested_units))
    if raw.empty:
        table = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _SUSPECT_COLUMNS.items()})
        table.attrs.update(attrs)
        return table
    table = _combine(s, raw, out, headlines, cols)
    table["finding"] = [finding_sentence(row) for row in table.itertuples(index=False)]
    for column in ("window_start", "window_end"):   # all-NaT columns arrive without a zone
        table[column] = pd.to_datetime(table[column], utc=True)
    table = table[list(_SUSPECT_COLUMNS)].astype(_SUSPECT_COLUMNS).reset_index(drop=True)
    table.attrs.update(attrs)
    return table


def _combine(s: _Sessions, raw: pd.DataFrame, final: pd.DataFrame,
             headlines: list[tuple[str, int]], cols: list[str]) -> pd.DataFrame:
    """Headlines as tested last (allowing for each other), every other unit as first tested
    (against the whole fleet); units whose excess a headline carries say which."""
    final_at = {(str(lv), int(c)): i for i, (lv, c) in enumerate(zip(final["level"], final["code"]))}
    raw_keys = {(str(lv), int(c)) for lv, c in zip(raw["level"], raw["code"])}
    # A fleet-wide headline found in a later pass has no first-pass row of its own.
    extra = [final_at[k] for k in headlines if k not in raw_keys]
    table = pd.concat([raw, final.loc[extra, raw.columns]], ignore_index=True) if extra else raw.copy()
    keys = [(str(lv), int(c)) for lv, c in zip(table["level"], table["code"])]
    for i, key in enumerate(keys):
        if key in headlines:
            table.loc[i] = final.loc[final_at[key], table.columns].to_numpy()
    table["flagged"] = [k in headlines for k in keys]
    table["significant"] = table["significant"].astype(bool)
    explained = np.full(len(table), None, dtype=object)
    for i, key in enumerate(keys):
        if table.at[i, "flagged"] or not table.at[i, "significant"]:
            continue
        shared = {k: s.failed_shared(key, k)[2] for k in headlines}
        best = max(shared, key=lambda k: shared[k], default=None)
        if best is not None and shared[best] > 0:
            explained[i] = s.name(best)
    _impact(s, table, keys)
    table["explained_by"] = pd.array(explained, dtype="string")
    table["family"] = [family_of(level) for level in table["level"]]
    table["rate"] = table["failures"] / table["sessions"]
    table["expected"] = table["baseline"] * table["sessions"]
    with np.errstate(divide="ignore", invalid="ignore"):
        table["lift"] = table["rate"] / table["baseline"]
        table["window_rate"] = np.where(table["window_sessions"] > 0, table["window_failures"]
                                        / table["window_sessions"].clip(lower=1), np.nan)
        window_lift = table["window_rate"] / table["window_baseline"]
    _engine_places(s, table, cols)
    # Headlines by how far they exceed their peers at their worst, everything else by evidence.
    # Headlines standing out at the notebooks' threshold (q < STRONG_Q) come before weaker ones.
    strong = table["flagged"] & (table["q_value"].astype(float) < STRONG_Q)
    table["tier"] = np.where(strong, 0, np.where(table["flagged"], 1, np.where(table["significant"], 2, 3)))
    lift = _peer_lift(s.counts(), table, keys).fillna(window_lift).fillna(table["lift"]).fillna(0.0)
    table["severity"] = np.where(table["flagged"], -lift, 0.0)
    table["p_value"] = table["p_value"].astype(float)
    return table.sort_values(["tier", "severity", "p_value", "z"],
                             ascending=[True, True, True, False], kind="stable")


def _windowed(table: pd.DataFrame) -> np.ndarray:
    """Whether each unit's evidence lies in its window, not over the whole period (`in_window`)."""
    return np.asarray(in_window(table["window_sessions"].to_numpy(), table["window_start"].to_numpy(),
                                table["p_window"].to_numpy(dtype=float), table["p_whole"].to_numpy(dtype=float)),
                      dtype=bool)


def _peer_lift(counts: FailureCounts, table: pd.DataFrame, keys: list[UnitKey]) -> pd.Series:
    """Per headline, its failure rate in its window ÷ the rest of the fleet's in the same
    buckets, both counted on every session: how far it exceeded its peers at its worst, the
    order headlines are shown in. Where the whole period, not the window, carries its
    evidence, its whole-period `lift` (a window of one session in the last hour says nothing).

    Not the window's own-history lift (`window_baseline`): a unit's rate outside its window
    can rest on a handful of failures (1 of 181 sessions: an expectation of 0.5 %, a lift of
    36 for 10 failures of 55), while its peers' rate in those hours rests on the fleet. NaN
    for a fleet-wide window, a unit without a window, or a window its peers did not fail in."""
    lift = np.full(len(table), np.nan)
    firsts, lasts = table["first"].to_numpy(), table["last"].to_numpy()
    windowed = _windowed(table)
    for i, key in enumerate(keys):
        if not table.at[i, "flagged"] or key[0] == FLEET or key[0] not in counts.levels:
            continue
        if not windowed[i]:   # the evidence is the whole period: its lift over the same hours
            lift[i] = float(table.at[i, "lift"])
            continue
        first, last = int(firsts[i]), int(lasts[i])   # a window with sessions: found
        unit = counts.levels[key[0]]
        n = float(unit.sessions[key[1], first:last + 1].sum())
        x = float(unit.failures[key[1], first:last + 1].sum())
        rest_n = float(counts.fleet_sessions[first:last + 1].sum()) - n
        rest_x = float(counts.fleet_failures[first:last + 1].sum()) - x
        if n > 0 and rest_n > 0 and rest_x > 0:
            lift[i] = (x / n) / (rest_x / rest_n)
    return pd.Series(lift, index=table.index)


def _impact(s: _Sessions, table: pd.DataFrame, keys: list[UnitKey]) -> None:
    """`excess_failures` (observed minus expected) and `customers` (distinct client label and
    API key pairs among the failed sessions) where the evidence lies: inside the window when
    the window test carries it, else over the whole period. Customers are counted for the
    significant units only (each count is a pass over the sessions)."""
    windowed = _windowed(table)
    whole_expected = (table["baseline"] * table["sessions"]).to_numpy(dtype=float)
    table["excess_failures"] = np.where(
        windowed, table["window_failures"].to_numpy(dtype=float) - table["window_expected"].to_numpy(dtype=float),
        table["failures"].to_numpy(dtype=float) - whole_expected)
    customers = np.full(len(table), None, dtype=object)
    for i, key in enumerate(keys):
        if not (table.at[i, "flagged"] or table.at[i, "significant"]):
            continue
        first, last = (int(table.at[i, "first"]), int(table.at[i, "last"])) if windowed[i] else (
            0, max(s.buckets - 1, 0))
        customers[i] = s.customers(key, first, last)
    table["customers"] = pd.array(customers, dtype="Int64")
    table["window_hours"] = ((table["window_end"] - table["window_start"]).dt.total_seconds() / 3600
                             if len(table) else np.zeros(0))


def unit_name(level: str, unit: str) -> str:
    """How a unit is named in sentences: "pod anam-engine-…", "sdk_version @anam-ai/js-sdk@3.6.0"."""
    return f"{unit_label(level)} {unit}"


def _engine_places(s: _Sessions, table: pd.DataFrame, cols: list[str]) -> None:
    """Fill `region` (the engine region holding the unit) and `parent` (the next coarser engine
    unit holding it), where at least NEST_SHARE of the unit's sessions are there."""
    engine = [c for c in ENGINE_LEVELS if c in cols]
    region = np.full(len(table), None, dtype=object)
    parent = np.full(len(table), None, dtype=object)
    nests: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for i, (level, code, unit) in enumerate(zip(table["level"], table["code"], table["unit"])):
        if level == "engine_region":
            region[i] = unit
        if level not in engine:
            continue
        for coarse in engine[engine.index(level) + 1:]:
            if (level, coarse) not in nests:
                nests[level, coarse] = _modal(s.codes[level], s.codes[coarse], len(s.names[level]),
                                              len(s.names[coarse]))
            modal, share = nests[level, coarse]
            if modal[code] < 0 or share[code] < NEST_SHARE:
                continue
            name = s.names[coarse][modal[code]]
            if parent[i] is None:
                parent[i] = unit_name(coarse, name)
            if coarse == "engine_region":
                region[i] = name
    table["region"], table["parent"] = region, parent
