"""The latency-regression scenario: a copy of a fleet whose persona answers are slower on one
engine version or LLM model (see `latency` for the turn-taking model it shifts)."""

from __future__ import annotations

from datetime import datetime

from .fleet import Fleet
from .latency import REGRESSION_SECONDS, LatencyRegression


def plant_latency_regression(fleet: Fleet, *, extra_seconds: float = REGRESSION_SECONDS,
                             engine_version: str | None = None, llm_model: str | None = None,
                             start: datetime | None = None, end: datetime | None = None) -> Fleet:
    """A copy of `fleet` whose transcripts answer `extra_seconds` slower on the sessions of
    `engine_version` and/or `llm_model` (optionally only those started in [start, end)).

    The session records are shared and unchanged: only the transcripts' timing differs, so the
    exit-status analysis sees the same fleet. Listed in `fleet.latency_regressions`.

    Parameters
    ----------
    fleet
        The fleet to copy (from `generate_fleet`).
    extra_seconds
        Seconds added to every persona answer of the matching sessions.
    engine_version, llm_model
        Which sessions are slow (at least one is needed; both must match when both are given).
    start, end
        Optional tz-aware window of session starts.

    Returns
    -------
    Fleet
        A new fleet; the one given is left untouched.

    Raises
    ------
    ValueError
        When neither target is given or `extra_seconds` is not a number.
    """
    target = f"engine version {engine_version}" if engine_version else f"LLM {llm_model}"
    planted = LatencyRegression(extra_seconds=extra_seconds, engine_version=engine_version,
                                llm_model=llm_model, start=start, end=end,
                                description=f"Sessions on {target} answer {extra_seconds:g} s slower.")
    return Fleet(fleet.sessions, None, fleet.incidents, seed=fleet.seed,
                 latency_regressions=(*fleet.latency_regressions, planted),
                 _factory=fleet._factory)
