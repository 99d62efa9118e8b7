"""Findings in plain words: one sentence per suspect, and the headline summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.checks import check_count, check_frame

_LABELS = {"engine_pod": "pod", "engine_replicaset": "replicaset",
           "engine_version": "version", "engine_region": "region"}
_FAMILY_WORDS = {"fleet": "the whole fleet", "engine": "the engine", "client": "a client",
                 "provider": "a provider", "persona": "a persona", "other": "another attribute"}


def unit_label(column: str) -> str:
    """The word naming a unit of `column` in sentences ("pod"; other columns by their name)."""
    return _LABELS.get(column, column)


def cause_sentence(heads: pd.DataFrame) -> str:
    """One sentence answering "engine, provider or client?" from the headline rows."""
    if heads.empty:
        return ("Engine, provider or client? None stands out: failures are spread evenly "
                "across pods, rollouts, clients, providers and personas.")
    parts = []
    for family in ("fleet", "engine", "provider", "client", "persona", "other"):
        rows = heads[heads["family"] == family] if "family" in heads else heads.iloc[:0]
        if family == "fleet" and len(rows):
            spans = ", ".join(span_words(start, end)
                              for start, end in zip(rows["window_start"], rows["window_end"]))
            parts.append(f"the whole fleet at once ({spans}: every region, version and provider)")
        elif len(rows):
            names = ", ".join(f"{unit_label(lv)} {u}" for lv, u in zip(rows["level"], rows["unit"]))
            parts.append(f"{_FAMILY_WORDS[family]} ({names})")
    said = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Engine, provider or client? {said[0].upper()}{said[1:]}."


def percent(value: float) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    share = 100 * float(value)
    if share != 0 and abs(share) < 1:
        return f"{share:.1f} %"
    return f"{share:.0f} %"


def between(start: pd.Timestamp, end: pd.Timestamp) -> str:
    if start.date() == (end - pd.Timedelta(1, "ns")).date() and end - start < pd.Timedelta(1, "D"):
        return f"between {start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC"
    return f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"


def impact_words(excess: Any, customers: Any) -> str:
    """ "about 19 more failed sessions than expected, 7 customers" ("" when nothing is known)."""
    words = []
    if excess is not None and not pd.isna(excess) and excess > 0:
        count = round(float(excess))
        words.append(f"about {count} more failed session{'s' if count != 1 else ''} than expected"
                     if count >= 1 else "less than one more failed session than expected")
    if customers is not None and not pd.isna(customers):
        words.append(f"{int(customers)} customer{'s' if int(customers) != 1 else ''}")
    return ", ".join(words)


def span_words(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """ "2026-04-15 05:00–07:00 UTC" (or with both dates when the window crosses midnight)."""
    if start.date() == (end - pd.Timedelta(1, "ns")).date() and end - start < pd.Timedelta(1, "D"):
        return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def in_window(window_sessions: Any, window_start: Any, p_window: Any, p_whole: Any) -> Any:
    """Whether a finding's evidence lies in its window rather than over the whole period: it
    has a window (a start, and sessions in it) and the window's test is at least as strong as
    the whole period's (a missing whole-period p-value counts as weaker). The one rule behind
    the sentence's lead, the findings' `scope`, the impact and the order of the headlines.
    Element-wise on arrays (a bool array), or on one finding's values (a bool)."""
    sessions, window, whole = (_numbers(v) for v in (window_sessions, p_window, p_whole))
    with np.errstate(invalid="ignore"):
        answer = ((np.nan_to_num(sessions) > 0) & ~np.asarray(pd.isna(window_start))
                  & (window <= np.where(np.isnan(whole), np.inf, whole)))
    return answer if answer.ndim else bool(answer)


def _numbers(value: Any) -> np.ndarray:
    """Values as floats, NaN for anything missing or not a number (None, pd.NA, text)."""
    values = np.asarray(value, dtype=object)
    numbers = pd.to_numeric(pd.Series(values.ravel()), errors="coerce").to_numpy(dtype=float)
    return numbers.reshape(values.shape)


def finding_sentence(row: Any) -> str:
    """One plain-English sentence for a row of rank_suspects."""
    q = f"q = {row.q_value:.2g}"
    impact = impact_words(getattr(row, "excess_failures", None), getattr(row, "customers", None))
    impact = f"; {impact}" if impact else ""
    if row.level == "fleet" and (not row.window_sessions or pd.isna(row.window_start)):
        return f"The whole fleet failed {percent(row.rate)} of {row.sessions} sessions; no window stands out ({q})."
    if row.level == "fleet":
        return (f"The whole fleet failed {percent(row.window_rate)} of sessions ({row.window_failures} "
                f"of {row.window_sessions}) {between(row.window_start, row.window_end)} vs "
                f"{percent(row.window_baseline)} the rest of the time: every region, version and "
                f"provider at once ({q}){impact}.")
    who = f"{unit_label(row.level)} {row.unit}"
    if row.region is not None and not pd.isna(row.region) and row.level != "engine_region":
        who += f" in region {row.region}"
    windowed = row.window_sessions and not pd.isna(row.window_start)
    if in_window(row.window_sessions, row.window_start, row.p_window, row.p_whole):
        text = (f"{who} failed {percent(row.window_rate)} of sessions ({row.window_failures} of "
                f"{row.window_sessions}) {between(row.window_start, row.window_end)} vs "
                f"{percent(row.window_baseline)} expected from its own rate the rest of the time "
                f"({percent(row.rate)} of {row.sessions} sessions overall vs {percent(row.baseline)} "
                f"on the rest of the fleet at the same time, {q}){impact}")
    elif windowed:
        # The whole period carries the evidence (and the impact): it leads; the worst window
        # is only where it was at its worst, not the incident.
        text = (f"{who} failed {percent(row.rate)} of {row.sessions} sessions over the whole period "
                f"vs {percent(row.baseline)} on the rest of the fleet at the same time ({q}){impact}; "
                f"at its worst {percent(row.window_rate)} ({row.window_failures} of "
                f"{row.window_sessions}) {between(row.window_start, row.window_end)}")
    else:
        text = (f"{who} failed {percent(row.rate)} of {row.sessions} sessions vs "
                f"{percent(row.baseline)} on the rest of the fleet at the same time ({q}){impact}")
    if row.explained_by is not None and not pd.isna(row.explained_by):
        text += f"; explained by {row.explained_by}"
    return text + "."


def summarize_suspects(ranked: pd.DataFrame, q: float = 0.01, top: int = 5) -> str:
    """The top headline findings of `rank_suspects` as text.

    The first line answers "engine, provider or client?" naming every headline by family;
    then the top headlines, each with what else it accounts for; or "No unit stands out".

    Parameters
    ----------
    ranked
        The table `rank_suspects` returned.
    q
        Only headlines with a q-value below this are told.
    top
        At most this many headlines are listed (the first line names them all).

    Returns
    -------
    str
        Plain-English lines.

    Raises
    ------
    ValueError
        When `q` is not in (0, 1] or `top` is not a whole number >= 0.
    """
    check_frame(ranked, ["flagged", "q_value", "finding", "explained_by", "level", "unit"])
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 1:
        raise ValueError(f"q={q!r} must be between 0 and 1, e.g. 0.01")
    top = check_count(top, "top")
    every = ranked[ranked["flagged"] & (ranked["q_value"] < q)]
    heads = every.head(top)
    if heads.empty:
        return (f"{cause_sentence(heads)}\n"
                f"No unit stands out (no unit has q < {q:g} after reconciling levels).")
    noun = "unit stands" if len(heads) == 1 else "units stand"
    lines = [cause_sentence(every), f"{len(heads)} {noun} out (q < {q:g}):"]
    for n, row in enumerate(heads.itertuples(index=False), start=1):
        lines.append(f"{n}. {row.finding}")
        own = f"{unit_label(row.level)} {row.unit}"
        covered = ranked.loc[ranked["explained_by"] == own]
        if len(covered):
            names = ", ".join(f"{unit_label(lv)} {u}" for lv, u in zip(covered["level"], covered["unit"]))
            lines.append(f"   It also accounts for the excess of {names}.")
    if len(every) > len(heads):
        rest = ", ".join(f"{unit_label(lv)} {u}" for lv, u in
                         zip(every["level"].iloc[len(heads):], every["unit"].iloc[len(heads):]))
        lines.append(f"Also standing out: {rest}.")
    return "\n".join(lines)
