"""Findings as plain values: what a scheduler reads, a report lists and a notebook publishes.

A *finding* is a headline of `rank_suspects` (flagged, q below the threshold), turned into a
JSON-ready dict: who (level, unit, region), how much (counts and rates, overall and inside the
incident window), when (the window), how sure (p- and q-value) and the sentence a person reads.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..data.checks import check_frame
from .wording import cause_sentence, in_window

#: The q-value below which a headline counts as standing out (the notebooks' threshold).
DEFAULT_Q = 0.01


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA or pd.isna(value):
        return None
    number = float(value)
    return None if math.isinf(number) or math.isnan(number) else number


def _count(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return None if value is None or value is pd.NA or pd.isna(value) else str(value)


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return str(pd.Timestamp(value).tz_convert("UTC").isoformat()).replace("+00:00", "Z")


def _scope(row: Any) -> str:
    """ "window" when the finding's evidence lies in its window, "period" when in the whole period."""
    return "window" if in_window(row.get("window_sessions"), row.get("window_start"), row.get("p_window"),
                                 row.get("p_whole")) else "period"


def finding_record(row: Any) -> dict[str, Any]:
    """One row of `rank_suspects` as a JSON-ready finding (see `suspect_findings`)."""
    return {
        "level": _text(row["level"]),
        "unit": _text(row["unit"]),
        "region": _text(row.get("region")),
        "counts": {"sessions": _count(row.get("sessions")), "failures": _count(row.get("failures")),
                   "expected_failures": _number(row.get("expected")),
                   "window_sessions": _count(row.get("window_sessions")),
                   "window_failures": _count(row.get("window_failures"))},
        "rates": {"rate": _number(row.get("rate")), "baseline": _number(row.get("baseline")),
                  "lift": _number(row.get("lift")), "window_rate": _number(row.get("window_rate")),
                  "window_baseline": _number(row.get("window_baseline"))},
        "window": {"start": _iso(row.get("window_start")), "end": _iso(row.get("window_end")),
                   "hours": _number(row.get("window_hours"))},
        # Impact: where the evidence lies ("window": inside it; "period": the whole period).
        "scope": _scope(row),
        "excess_failures": _number(row.get("excess_failures")),
        "customers": _count(row.get("customers")),
        "p_value": _number(row.get("p_value")),
        "q_value": _number(row.get("q_value")),
        "explained_by": _text(row.get("explained_by")),
        "sentence": _text(row.get("finding")),
    }


def suspect_findings(ranked: pd.DataFrame, q: float = DEFAULT_Q) -> list[dict[str, Any]]:
    """The headlines of `rank_suspects` with q-value below `q`, as JSON-ready dicts.

    Parameters
    ----------
    ranked : DataFrame
        The output of `analysis.rank_suspects`.
    q : float
        Only flagged units with `q_value < q` count as standing out (default 0.01: at most about
        one in a hundred such headlines is a false alarm).

    Returns
    -------
    list of dict
        Most suspicious first; each has level, unit, region, counts, rates, window (start,
        end, hours), scope ("window" when the evidence lies in the window, else "period"),
        excess_failures (failed sessions beyond what was expected there), customers (distinct
        client label and API key pairs among those failed sessions), p_value, q_value,
        explained_by and sentence. Level "fleet" is a fleet-wide window (unit "all
        sessions"). Empty when nothing stands out.

    Raises
    ------
    ValueError
        When `ranked` lacks the columns of `rank_suspects`, or `q` is not in (0, 1].
    """
    check_frame(ranked, ["level", "unit", "flagged", "q_value", "finding"])
    _check_q(q)
    return [finding_record(row) for _, row in _headlines(ranked, q).iterrows()]


def suspect_headline(ranked: pd.DataFrame, q: float = DEFAULT_Q) -> str:
    """The sentence answering "engine, provider or client?" for the headlines below `q`.

    Parameters
    ----------
    ranked : DataFrame
        The output of `analysis.rank_suspects`.
    q : float
        Only flagged units with `q_value < q` count as standing out.

    Returns
    -------
    str
        E.g. "Engine, provider or client? The engine (pod …) and a client (sdk_version …)."

    Raises
    ------
    ValueError
        When `ranked` lacks the columns of `rank_suspects`, or `q` is not in (0, 1].
    """
    check_frame(ranked, ["level", "unit", "flagged", "q_value"])
    _check_q(q)
    return cause_sentence(_headlines(ranked, q))


def headline_window(ranked: pd.DataFrame, q: float = DEFAULT_Q) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The time window of the top headline below `q`, or (None, None) when none stands out.

    Parameters
    ----------
    ranked : DataFrame
        The output of `analysis.rank_suspects`.
    q : float
        Only flagged units with `q_value < q` count as standing out.

    Returns
    -------
    tuple of (Timestamp or None, Timestamp or None)
        The UTC start and end of the window where the top headline's excess lies.

    Raises
    ------
    ValueError
        When `ranked` lacks the columns of `rank_suspects`, or `q` is not in (0, 1].
    """
    check_frame(ranked, ["level", "unit", "flagged", "q_value", "window_start", "window_end"])
    _check_q(q)
    heads = _headlines(ranked, q)
    if heads.empty or pd.isna(heads["window_start"].iloc[0]):
        return None, None
    return heads["window_start"].iloc[0], heads["window_end"].iloc[0]


def _check_q(q: object) -> None:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 1:
        raise ValueError(f"q={q!r} must be a number between 0 and 1, e.g. 0.01")


def _headlines(ranked: pd.DataFrame, q: float) -> pd.DataFrame:
    return ranked[ranked["flagged"].fillna(False).astype(bool) & (ranked["q_value"] < q)]


def latency_findings(table: pd.DataFrame, q: float = DEFAULT_Q) -> list[dict[str, Any]]:
    """The groups of `response_latency` that answer slower than the rest (q below `q`), as
    findings of the same shape as `suspect_findings`.

    `counts` holds sessions and answers; `rates` the overlap and interruption shares (0..1);
    `seconds` the p50 (with its interval), the rest's p50, the shift and the p90; `window` is
    open (the comparison covers the whole window).

    Parameters
    ----------
    table : DataFrame
        The output of `analysis.response_latency`.
    q : float
        Only groups with `q_value < q` and a positive shift count (default 0.01).

    Returns
    -------
    list of dict
        Most significant first; empty when no group answers slower.

    Raises
    ------
    ValueError
        When `table` lacks the latency columns, or `q` is not in (0, 1].
    """
    from .latency import summarize_latency

    check_frame(table, ["sessions", "turns", "shift", "p50", "q_value"])
    _check_q(q)
    by = str(table.attrs.get("by", table.index.name or "group"))
    heads = table[(table["q_value"] < q) & (table["shift"] > 0)]
    found = []
    for name in heads.index:
        one = table.loc[[name]]
        one.attrs = dict(table.attrs)
        row = table.loc[name]
        found.append({
            "level": by, "unit": str(name), "region": None,
            "counts": {"sessions": _count(row["sessions"]), "answers": _count(row["turns"])},
            "rates": {"overlap_rate": _number(row.get("overlap_rate")),
                      "interruption_rate": _number(row.get("interruption_rate"))},
            "seconds": {k: _number(row.get(k)) for k in ("p50", "p50_low", "p50_high", "rest_p50",
                                                           "shift", "p90")},
            "window": {"start": None, "end": None},
            "p_value": _number(row.get("p_value")), "q_value": _number(row["q_value"]),
            "explained_by": None, "sentence": summarize_latency(one, q=q),
        })
    return found
