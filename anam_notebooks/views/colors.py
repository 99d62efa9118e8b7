"""One colour per exit status (and per category value) across every figure and widget.

Known statuses get fixed colours; anything else is hashed into a palette with a stable digest,
so the same unknown status gets the same colour in every figure, process and report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pandas as pd

# Label used wherever a session has no exit status yet (still running).
ACTIVE_LABEL = "ACTIVE"
# Label for a missing category value (a lane, a version...) so it still gets drawn.
MISSING_LABEL = "(missing)"

KNOWN_STATUS_COLORS: dict[str, str] = {
    "NORMAL_EXIT": "#2ca02c",
    "CLOSED_BY_ENGINE": "#1f77b4",
    "CLOSED_BY_CLIENT": "#17becf",
    "TIMEOUT": "#bcbd22",
    "ERROR": "#d62728",
    ACTIVE_LABEL: "#7f7f7f",
}

# Distinct from the fixed colours above, so a hashed status never looks like a known one.
PALETTE: tuple[str, ...] = (
    "#9467bd", "#8c564b", "#e377c2", "#ff7f0e", "#393b79", "#637939",
    "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
    "#756bb1", "#636363", "#ad494a", "#a55194",
)


def hashed_color(value: str, palette: tuple[str, ...] = PALETTE) -> str:
    """A palette colour chosen by a stable digest of `value` (not Python's salted hash)."""
    digest = hashlib.blake2s(value.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return palette[int.from_bytes(digest, "big") % len(palette)]


def status_color(status: object) -> str:
    """The colour of one exit status; None/NaN means an active session."""
    label = status_label(status)
    return KNOWN_STATUS_COLORS.get(label) or hashed_color(label)


def status_label(status: object) -> str:
    """How an exit status is named in legends: missing means still active."""
    if status is None or status is pd.NA or status is pd.NaT:
        return ACTIVE_LABEL
    if isinstance(status, float) and status != status:
        return ACTIVE_LABEL
    return str(status)


def color_map(values: Iterable[object], *, statuses: bool) -> dict[str, str]:
    """Colours for a set of labels: status colours when `statuses`, else hashed per value."""
    if statuses:
        return {label: status_color(label) for label in values}  # type: ignore[misc]
    return {str(v): hashed_color(str(v)) for v in values}
