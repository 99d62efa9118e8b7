"""New, ongoing or resolved: a run's findings against the previous run's, so a scheduled job
alerts once per cause rather than on every run while an incident lasts.

Two findings are the same cause when they name the same unit at the same level (the same pod,
the same SDK release...) and their windows overlap or touch: a gap of at most `ADJACENT` between
one window's end and the other's start still counts as the same incident going on, so a window
that grows run after run, or is cut at a bucket edge, stays one cause. A missing window bound is
open (the whole period). A finding whose evidence holds over the whole period (`scope`
"period": an SDK release failing every hour it runs) is the same cause whatever its window, as
that window is only its worst stretch and moves when the rest of the fleet changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

Status = Literal["new", "ongoing", "resolved"]
STATUSES: tuple[Status, ...] = ("new", "ongoing", "resolved")
#: Windows this close (end to start) are one cause going on: one time bucket of the default freq.
ADJACENT = pd.Timedelta(hours=1)

__all__ = ["ADJACENT", "STATUSES", "compare_findings", "status_counts"]


def _findings(value: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """Finding dicts from a list of findings or a findings document ({"findings": [...]})."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = value.get("findings")
        if not isinstance(value, list):
            raise ValueError(f"{name} is a mapping without a 'findings' list: give a findings document "
                             "(<notebook>.findings.json) or a list of findings")
    found = []
    for n, finding in enumerate(value):
        if not isinstance(finding, Mapping) or "level" not in finding or "unit" not in finding:
            raise ValueError(f"{name}[{n}] is not a finding (a dict with 'level' and 'unit'): {finding!r:.80}")
        found.append(dict(finding))
    return found


def _bound(window: Any, key: str) -> pd.Timestamp | None:
    value = window.get(key) if isinstance(window, Mapping) else None
    if value is None or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _touch(a: Mapping[str, Any], b: Mapping[str, Any], gap: pd.Timedelta) -> bool:
    """Do the windows of `a` and `b` overlap, or lie at most `gap` apart?"""
    a_start, a_end = _bound(a.get("window"), "start"), _bound(a.get("window"), "end")
    b_start, b_end = _bound(b.get("window"), "start"), _bound(b.get("window"), "end")
    before = a_end is not None and b_start is not None and b_start - a_end > gap
    after = b_end is not None and a_start is not None and a_start - b_end > gap
    return not (before or after)


def _same_cause(a: Mapping[str, Any], b: Mapping[str, Any], gap: pd.Timedelta) -> bool:
    if str(a.get("level")) != str(b.get("level")) or str(a.get("unit")) != str(b.get("unit")):
        return False
    # A unit failing over the whole period: its window is only its worst stretch, which moves
    # from run to run as the rest of the fleet changes; the cause is the same while it lasts.
    if "period" in (a.get("scope"), b.get("scope")):
        return True
    return _touch(a, b, gap)


def compare_findings(previous: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None,
                     current: Sequence[Mapping[str, Any]] | Mapping[str, Any], *,
                     gap: pd.Timedelta | str = ADJACENT) -> list[dict[str, Any]]:
    """Mark each finding `new`, `ongoing` or `resolved` against the previous run's findings.

    Parameters
    ----------
    previous : list of dict, findings document or None
        The previous run's findings (`read_findings`, or the `<notebook>.findings.json` it wrote);
        None when there was no previous run (everything is new).
    current : list of dict or findings document
        This run's findings.
    gap : Timedelta or str
        How far apart two windows of one unit may be and still be one cause (default one hour).

    Returns
    -------
    list of dict
        This run's findings in their order, each a copy with `status` "ongoing" (the previous
        run had the same cause) or "new"; then the previous findings no run finding matches,
        each a copy with `status` "resolved".

    Raises
    ------
    ValueError
        When an item is not a finding (a dict with `level` and `unit`), or `gap` is not a duration.
    """
    before = _findings(previous, "previous")
    now = _findings(current, "current")
    try:
        tolerance = pd.Timedelta(gap)
    except (ValueError, TypeError):
        raise ValueError(f"gap={gap!r} is not a duration, e.g. '1h'") from None
    if pd.isna(tolerance) or tolerance < pd.Timedelta(0):
        raise ValueError(f"gap={gap!r} is not valid: expected a duration >= 0, e.g. '1h'")
    marked = [{**f, "status": "ongoing" if any(_same_cause(f, p, tolerance) for p in before) else "new"}
              for f in now]
    gone = [{**p, "status": "resolved"} for p in before if not any(_same_cause(p, f, tolerance) for f in now)]
    return marked + gone


def status_counts(compared: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many findings are new, ongoing and resolved (every status present, zero or more)."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for finding in compared:
        status = finding.get("status")
        if status in counts:
            counts[str(status)] += 1
    return counts
