"""How fast personas answer in simulated transcripts, and the latency regressions planted in them.

Turn-taking follows what voice-agent platforms report: the gap between the end of a user's
turn and the start of the persona's answer is right-skewed around a second (log-normal), each
session has its own pace (network, device, load: a per-session factor shared by all its
turns, which is why turns of one session are not independent), and a few answers overlap the
user's last words (barge-in, a negative gap). A `LatencyRegression` adds seconds to every
answer of the sessions it matches, as a slow rollout or a slower LLM would.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

# The fleet-wide answer gap: median seconds, spread of a session's pace, spread of one turn.
GAP_MEDIAN = 0.95
SESSION_SIGMA = 0.25
TURN_SIGMA = 0.45
OVERLAP_SHARE = 0.06          # answers that start before the user finished
OVERLAP_SECONDS = (0.05, 0.8)
INTERRUPTED_SHARE = 0.12      # persona answers the user talks over
REGRESSION_SECONDS = 0.9      # the demo's planted slowdown


@dataclass(frozen=True)
class LatencyRegression:
    """Persona answers `extra_seconds` slower in sessions matching every given attribute.

    `engine_version` matches the record's engineVersion, `llm_model` its
    personaConfig.llmConfig.modelName; None matches anything. `start`/`end` (tz-aware UTC,
    optional) limit it to sessions started inside that window.
    """

    extra_seconds: float
    engine_version: str | None = None
    llm_model: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.extra_seconds, bool) or not isinstance(self.extra_seconds, (int, float)):
            raise ValueError(f"extra_seconds={self.extra_seconds!r} is not valid: give seconds, e.g. 0.9")
        if self.engine_version is None and self.llm_model is None:
            raise ValueError("a latency regression needs engine_version=... or llm_model=... "
                             "(which sessions are slow)")

    def matches(self, record: Mapping, started: datetime | None) -> bool:
        if self.engine_version is not None and record.get("engineVersion") != self.engine_version:
            return False
        if self.llm_model is not None and llm_model_of(record) != self.llm_model:
            return False
        if started is not None and self.start is not None and started < self.start:
            return False
        return not (started is not None and self.end is not None and started >= self.end)


def llm_model_of(record: Mapping) -> str | None:
    config = record.get("personaConfig")
    llm = config.get("llmConfig") if isinstance(config, Mapping) else None
    model = llm.get("modelName") if isinstance(llm, Mapping) else None
    return model if isinstance(model, str) else None


def extra_delay(regressions: tuple[LatencyRegression, ...], record: Mapping,
                started: datetime | None) -> float:
    """Seconds every answer of this session is delayed by the planted regressions."""
    return sum(r.extra_seconds for r in regressions if r.matches(record, started))


def session_pace(rnd: random.Random) -> float:
    """This session's median answer gap (seconds), drawn once per session."""
    return GAP_MEDIAN * rnd.lognormvariate(0.0, SESSION_SIGMA)


def answer_gap(rnd: random.Random, pace: float, extra: float) -> float:
    """One answer's gap in seconds: log-normal around the session's pace, sometimes an overlap."""
    if rnd.random() < OVERLAP_SHARE:
        return -rnd.uniform(*OVERLAP_SECONDS)
    return pace * rnd.lognormvariate(0.0, TURN_SIGMA) + extra


def demo_regression(engine_version: str) -> LatencyRegression:
    """The demo's planted slowdown: every answer on the newest engine version ~0.9 s slower."""
    return LatencyRegression(
        extra_seconds=REGRESSION_SECONDS, engine_version=engine_version,
        description=(f"Sessions on engine version {engine_version} answer about "
                     f"{REGRESSION_SECONDS:g} s slower than the rest of the fleet: every persona "
                     "answer starts that much later after the user stops speaking."))

