"""`explain_session`: from one session (a customer's "my session dropped") to the finding it belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .failures import FailureSpec, is_failure
from .findings import DEFAULT_Q, suspect_findings
from .wording import percent, span_words, unit_label

# Where a session is compared with its peers when it falls in no finding.
_PEER_LEVELS = ("engine_pod", "tts_provider", "sdk_version")


def _as_findings(findings: pd.DataFrame | Sequence[Mapping[str, Any]], q: float) -> list[dict[str, Any]]:
    if isinstance(findings, pd.DataFrame):
        return suspect_findings(findings, q=q)
    if isinstance(findings, (str, bytes)) or not isinstance(findings, Sequence):
        raise TypeError("findings must be the table rank_suspects returned or a list of finding "
                        f"dicts (suspect_findings), got {type(findings).__name__}")
    out = []
    for n, finding in enumerate(findings):
        if not isinstance(finding, Mapping) or "level" not in finding or "unit" not in finding:
            raise ValueError(f"finding {n} is not a finding dict with 'level' and 'unit' "
                             "(see analysis.suspect_findings)")
        out.append(dict(finding))
    return out


def _window(finding: Mapping[str, Any]) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    window = finding.get("window") or {}
    start, end = window.get("start"), window.get("end")
    if start is None or end is None:
        return None, None
    return pd.Timestamp(start), pd.Timestamp(end)


def _matches(session: pd.Series, finding: Mapping[str, Any]) -> bool:
    """Whether the session is one of the finding's sessions (its unit, in its window when the
    evidence lies there)."""
    level = finding.get("level")
    if level != "fleet":
        value = session.get(level) if level in session.index else None
        if value is None or pd.isna(value) or str(value) != str(finding.get("unit")):
            return False
    start, end = _window(finding)
    if finding.get("scope", "window") == "period" and level != "fleet":
        return True
    began = session.get("start_time")
    if start is None or began is None or pd.isna(began):
        return level != "fleet"
    return bool(start <= pd.Timestamp(began) < end)


def _who(finding: Mapping[str, Any]) -> str:
    if finding.get("level") == "fleet":
        return "the whole fleet's"
    return f"{unit_label(str(finding['level']))} {finding['unit']}"


def _sentence(session_id: str, failed: bool, status: str, finding: Mapping[str, Any]) -> str:
    counts = finding.get("counts") or {}
    start, end = _window(finding)
    excess = finding.get("excess_failures")
    more = f"; about {round(excess)} more than expected" if excess is not None and excess >= 0.5 else ""
    fleet = finding.get("level") == "fleet"
    if finding.get("scope", "window") == "window" and start is not None:
        failures, sessions = counts.get("window_failures"), counts.get("window_sessions")
        where = f"the {span_words(start, end)} {'fleet-wide outage' if fleet else 'outage'}"
    else:
        failures, sessions = counts.get("failures"), counts.get("sessions")
        where = "the whole period"
    unit = "" if fleet else f" {finding['unit']}"
    if failed:
        return (f"Session {session_id} ({status}) is one of {failures} failed{unit} sessions in "
                f"{where}{more}{' (every region, version and provider)' if fleet else ''}.")
    return (f"Session {session_id} ended {status}, but it ran on {_who(finding).removesuffix(chr(39) + 's')} "
            f"during {where}, when {failures} of its {sessions} sessions failed{more}.")


def _how_usual(session: pd.Series, df: pd.DataFrame, failures: FailureSpec, freq: str) -> str:
    """How common the session's exit is on its unit (pod, provider, SDK) and in its hour."""
    status = session.get("exit_status")
    if status is None or pd.isna(status):
        return "It is still active: no exit to compare yet."
    ended = df[~df["is_active"]] if "is_active" in df.columns else df
    same = (ended["exit_status"].astype("string") == str(status)).fillna(False)
    parts = []
    began = session.get("start_time")
    if began is not None and not pd.isna(began):
        hour = pd.Timestamp(began).floor(freq)
        starts = pd.to_datetime(ended["start_time"], utc=True)
        in_hour = (starts >= hour) & (starts < hour + pd.Timedelta(freq))
        if in_hour.any():
            parts.append(f"{percent(same[in_hour].mean())} of the fleet's sessions that hour "
                         f"({int(same[in_hour].sum())} of {int(in_hour.sum())})")
    for level in _PEER_LEVELS:
        value = session.get(level) if level in session.index else None
        if value is None or pd.isna(value) or level not in ended.columns:
            continue
        mine = (ended[level].astype("string") == str(value)).fillna(False).to_numpy(dtype=bool)
        if mine.any():
            parts.append(f"{percent(same[mine].mean())} of {unit_label(level)} {value}'s sessions "
                         f"({int(same[mine].sum())} of {int(mine.sum())})")
    overall = same.mean() if len(same) else np.nan
    if not parts:
        return f"{status} ended {percent(overall)} of all sessions."
    failed_kind = bool(is_failure(pd.Series([status]), failures)[0])
    usual = ("a usual failure" if failed_kind else "a usual exit") if overall >= 0.01 else "a rare exit"
    return f"{status} is {usual} here: it ended " + ", ".join(parts) + f" ({percent(overall)} of all sessions)."


def explain_session(session_id: str, findings: pd.DataFrame | Sequence[Mapping[str, Any]],
                    df: pd.DataFrame | None = None, *, q: float = DEFAULT_Q,
                    failures: FailureSpec = None, freq: str = "1h") -> str:
    """Which findings one session falls in, or how usual its exit is for its unit and hour.

    The support view of a diagnosis: a customer says "my session dropped"; this says whether
    that session was one of an incident's failures ("one of 20 failed CARTESIA sessions in the
    2026-04-14 13:00–17:00 UTC outage; about 17 more than expected") or, when it falls in no
    finding, how common its exit was on its pod, provider and SDK and in its hour.

    Parameters
    ----------
    session_id
        The session's id (the index of the sessions frame).
    findings
        The table `rank_suspects` returned (its headlines with q below `q` are used) or a list
        of finding dicts (`suspect_findings`, or read back from a report).
    df
        The sessions frame holding the session (the one the findings were computed from).
        None fetches the one session through `connect()`; the comparison with its peers then
        needs the frame and is left out.
    q
        For a `rank_suspects` table: headlines with a q-value below this count.
    failures
        Which exit statuses count as failures (see `is_failure`).
    freq
        The hour the session is compared in when it matches no finding.

    Returns
    -------
    str
        One or two plain-English sentences.

    Raises
    ------
    KeyError
        When `df` is given and holds no session with that id.
    TypeError, ValueError
        When `findings` is neither a `rank_suspects` table nor finding dicts.
    """
    if df is None:
        from ..data.sessions import sessions_frame
        from ..fetch import connect

        session = sessions_frame([connect().get_session(str(session_id))]).iloc[0]
    elif str(session_id) not in df.index:
        raise KeyError(f"session {session_id!r} is not in the frame ({len(df)} sessions); "
                       "pass the frame the findings were computed from")
    else:
        session = df.loc[str(session_id)]
    return explain_row(str(session_id), session, findings, df, q=q, failures=failures, freq=freq)


def explain_row(session_id: str, session: pd.Series, findings: pd.DataFrame | Sequence[Mapping[str, Any]],
                df: pd.DataFrame | None = None, *, q: float = DEFAULT_Q,
                failures: FailureSpec = None, freq: str = "1h") -> str:
    """`explain_session` for a session already at hand (a row of a sessions frame); `df`, when
    given, is the fleet its exit is compared with."""
    found = _as_findings(findings, q)
    status = session.get("exit_status")
    active = status is None or pd.isna(status)
    status_text = "still active" if active else str(status)
    failed = not active and bool(is_failure(pd.Series([status]), failures)[0])
    hits = [f for f in found if _matches(session, f)]
    if hits:
        return " ".join(_sentence(session_id, failed, status_text, f) for f in hits)
    lead = (f"Session {session_id} ({status_text}) falls in none of the {len(found)} findings"
            if found else f"Session {session_id} ({status_text}) falls in no finding (none stands out)")
    if df is None:
        return lead + "."
    return f"{lead}. {_how_usual(session, df, failures, freq)}"
