"""Was it this session, or its pod? One session's neighbours on the same engine pod, compared
with the rest of the fleet over the same hours.

Plain words: the *neighbours* are the other sessions the same pod served from an hour before
this session started to an hour after it ended. If they failed far more often than the rest of
the fleet in that window (a one-sided Fisher exact test, p below `alpha`, and at least
`min_failures` failures among them), the pod is the suspect; if they look like everyone else,
the cause is more likely on this session's own side (its client, network or persona).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats

from ..data.checks import check_frame, ended_mask
from .failures import FailureSpec, is_failure
from .wording import percent

#: How far around the session its neighbours are looked for.
NEIGHBOUR_MARGIN = pd.Timedelta("1h")


@dataclass(frozen=True)
class NeighbourVerdict:
    """The answer to "this session, or the pod?" with the numbers behind it.

    `verdict` is "pod" (its neighbours failed significantly more than the fleet), "session"
    (they did not), or "unknown" (no pod named, or no ended neighbours to judge by).

    Attributes
    ----------
    session_id : str
        The session the verdict is about.
    pod : str or None
        The engine pod that served it (None when its engine host names none).
    verdict : str
        "pod", "session" or "unknown".
    sentence : str
        The verdict in plain words, with the numbers.
    neighbours : DataFrame
        The pod's other sessions around the session's time.
    pod_sessions, pod_failures : int
        Ended neighbours on the pod, and how many of them failed.
    fleet_sessions, fleet_failures : int
        Ended sessions on the rest of the fleet in the same window, and their failures.
    p_value : float or None
        One-sided Fisher exact test that the pod failed more than the fleet (None untested).
    window : tuple of (str or None, str or None)
        The neighbourhood's start and end, ISO-8601 UTC.
    """

    session_id: str
    pod: str | None
    verdict: str
    sentence: str
    neighbours: pd.DataFrame = field(repr=False)
    pod_sessions: int = 0
    pod_failures: int = 0
    fleet_sessions: int = 0
    fleet_failures: int = 0
    p_value: float | None = None
    window: tuple[str | None, str | None] = (None, None)

    @property
    def pod_rate(self) -> float | None:
        """Failure share among the pod's other ended sessions (None without any)."""
        return self.pod_failures / self.pod_sessions if self.pod_sessions else None

    @property
    def fleet_rate(self) -> float | None:
        """Failure share among the rest of the fleet's ended sessions in the window."""
        return self.fleet_failures / self.fleet_sessions if self.fleet_sessions else None


def neighbour_window(session: Any, margin: pd.Timedelta = NEIGHBOUR_MARGIN,
                     now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(since, until) around one session: `margin` before its start to `margin` after its end
    (after now, for a session still active).

    Parameters
    ----------
    session : row of a sessions frame
        Needs `start_time` and `end_time`.
    margin : Timedelta
        How far either side to look.
    now : Timestamp, optional
        The end of a session still active (default: now).

    Returns
    -------
    tuple of Timestamp

    Raises
    ------
    ValueError
        When the session has no start time.
    """
    start = session["start_time"]
    if start is None or pd.isna(start):
        raise ValueError("the session has no start_time: its neighbours cannot be placed in time")
    end = session["end_time"]
    if end is None or pd.isna(end):
        end = now if now is not None else pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(start) - margin, pd.Timestamp(end) + margin


def neighbour_verdict(session: Any, around: pd.DataFrame, failures: FailureSpec = None,
                      alpha: float = 0.01, min_failures: int = 3) -> NeighbourVerdict:
    """Judge one session's pod by its neighbours (see the module docstring).

    Parameters
    ----------
    session : row of a sessions frame
        The session (its `name` is the id); needs `engine_pod`.
    around : DataFrame
        Every session in the surrounding window (e.g. `fetch_sessions` over `neighbour_window`).
    failures : FailureSpec
        Which exit statuses count as failures.
    alpha : float
        p-value below which the pod counts as failing more than the fleet.
    min_failures : int
        Fewest failures among the neighbours for a "pod" verdict.

    Returns
    -------
    NeighbourVerdict

    Raises
    ------
    TypeError, ValueError
        When `around` is not a sessions frame or `alpha` is not in (0, 1).
    """
    check_frame(around, ["engine_pod", "exit_status"])
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be a number between 0 and 1, e.g. 0.01")
    session_id = str(session.name)
    pod = session.get("engine_pod")
    pod = None if pod is None or pd.isna(pod) else str(pod)
    others = around[around.index != session_id]
    if pod is None:
        return NeighbourVerdict(session_id, None, "unknown",
                                f"Session {session_id}'s engine host does not name a pod, so its "
                                "neighbours cannot be told apart from the fleet.", others.iloc[:0])
    on_pod = (others["engine_pod"].astype("string") == pod).fillna(False).to_numpy(dtype=bool)
    ended = ended_mask(others)
    failed = is_failure(others["exit_status"], failures) & ended
    n_pod, f_pod = int((on_pod & ended).sum()), int((on_pod & failed).sum())
    n_rest, f_rest = int((~on_pod & ended).sum()), int((~on_pod & failed).sum())
    neighbours = others[on_pod]
    times = around["start_time"].dropna() if "start_time" in around.columns else pd.Series([])
    window = ((times.min().isoformat(), times.max().isoformat()) if len(times) else (None, None))
    if n_pod == 0:
        return NeighbourVerdict(session_id, pod, "unknown",
                                f"No other ended session ran on pod {pod} within an hour of "
                                f"session {session_id}: nothing to compare it with.",
                                neighbours, 0, 0, n_rest, f_rest, None, window)
    p = float(stats.fisher_exact([[f_pod, n_pod - f_pod], [f_rest, max(n_rest - f_rest, 0)]],
                                 alternative="greater")[1]) if n_rest else 1.0
    compared = (f"{f_pod} of its {n_pod} other ended sessions failed ({percent(f_pod / n_pod)}) "
                f"vs {percent(f_rest / n_rest) if n_rest else 'n/a'} on the rest of the fleet "
                f"in the same window (p = {p:.2g})")
    if p < alpha and f_pod >= min_failures:
        verdict, sentence = "pod", (f"Pod {pod} looks at fault: {compared}. Continue with "
                                    "02_engine_hosts.")
    else:
        verdict, sentence = "session", (f"Pod {pod} looks healthy: {compared}. Look at this "
                                        "session's own side (client, network, persona).")
    return NeighbourVerdict(session_id, pod, verdict, sentence, neighbours, n_pod, f_pod,
                            n_rest, f_rest, p, window)


def verdict_findings(verdict: NeighbourVerdict) -> list[dict[str, Any]]:
    """The verdict as findings (see `suspect_findings`): one when the pod is at fault, else none.

    Parameters
    ----------
    verdict : NeighbourVerdict

    Returns
    -------
    list of dict
    """
    if verdict.verdict != "pod":
        return []
    return [{"level": "engine_pod", "unit": verdict.pod, "region": None,
             "counts": {"sessions": verdict.pod_sessions, "failures": verdict.pod_failures,
                        "fleet_sessions": verdict.fleet_sessions,
                        "fleet_failures": verdict.fleet_failures},
             "rates": {"rate": verdict.pod_rate, "baseline": verdict.fleet_rate},
             "window": {"start": verdict.window[0], "end": verdict.window[1]},
             "p_value": verdict.p_value, "q_value": verdict.p_value,   # one test: nothing to correct
             "explained_by": None, "sentence": verdict.sentence}]


def _duration_words(value: Any) -> str:
    if value is None or pd.isna(value):
        return "an unknown time"
    seconds = int(round(pd.Timedelta(value).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def session_summary(session: Any) -> str:
    """One line to paste into a ticket: who, how it ended, after how long, where.

    Parameters
    ----------
    session : row of a sessions frame
        Its `name` is the id.

    Returns
    -------
    str
    """
    def value(name: str, missing: str) -> str:
        item = session.get(name)
        return missing if item is None or pd.isna(item) else str(item)

    ended = value("exit_status", "")
    how = f"ended {ended} after {_duration_words(session.get('duration'))}" if ended else \
        "has not ended yet (active)"
    return (f"Session {session.name} ({value('client_label', 'no label')}) {how} on pod "
            f"{value('engine_pod', 'unknown')} ({value('engine_version', 'unknown version')}, "
            f"region {value('engine_region', 'unknown')}).")
