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

#: How different (CIEDE2000 colour difference) a hashed colour is from every fixed status
#: colour, at least. About 2 is a just-noticeable difference; at 20 two swatches read as
#: different colours at a glance, so a new status never passes for a known one.
MIN_DELTA_E_FROM_KNOWN = 20.0
#: How different the hashed colours are from each other, at least.
MIN_DELTA_E_WITHIN_PALETTE = 12.0

# Chosen by greedy max-min selection over an OKLCH grid (lightness 0.45-0.75, chroma 0.10-0.15,
# in sRGB gamut), keeping only colours at least MIN_DELTA_E_FROM_KNOWN from every fixed colour;
# tests/test_plots.py measures both distances.
PALETTE: tuple[str, ...] = (
    "#c47581", "#056641", "#4845a5", "#e99b2a", "#89afed", "#7d460b",
    "#922452", "#ab72d3", "#757628", "#fc8a61", "#ec86cc", "#925b8d",
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
