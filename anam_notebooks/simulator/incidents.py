"""The failures planted in a demo fleet, so investigations have something real to find.

Four kinds, one per family an investigation has to tell apart:

- "pod": one engine pod failing for a few hours (an engine fault, concentrated);
- "replicaset": one rollout in one region erroring modestly all its life (an engine fault, spread);
- "client": one client SDK release failing on every pod, all the time (a client regression);
- "provider": one TTS provider failing for a few hours, on every pod and every SDK (an upstream
  outage on a big unit: about a third of the traffic).

and one more, planted only when asked for by name (`incidents={"fleet"}`):

- "fleet": every session of the fleet failing for 40 minutes, whatever its region, version,
  client or provider (a shared dependency down: nothing to blame on one unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .timefmt import from_ms
from .topology import Topology

KINDS = ("pod", "replicaset", "client", "provider")
# Kinds planted only when named (`incidents=True` keeps the four above).
EXTRA_KINDS = ("fleet",)
FLEET_FAILURE_RATE = 0.5
FLEET_MINUTES = 40
POD_FAILURE_RATE = 0.40
REPLICASET_EXCESS = 2.5
# The client and provider incidents are milder than the pod's at its worst, so the demo's
# headlines keep the pod first while still naming all three families.
CLIENT_FAILURE_RATE = 0.20
PROVIDER_FAILURE_RATE = 0.35
PROVIDER_HOURS = 4.0


@dataclass(frozen=True)
class Incident:
    """One planted failure: where (a unit of one frame column), when, and how strong.

    Engine incidents also say their region, version, replicaset and pod; client and provider
    incidents leave those None. `column` and `value` name the unit as the sessions frame and
    `rank_suspects` spell it (e.g. "engine_pod", "sdk_version", "tts_provider").
    """

    kind: str                 # one of KINDS
    region: str | None
    engine_version: str | None
    replicaset: str | None    # "anam-engine-<hash>", the Kubernetes ReplicaSet name
    pod: str | None           # "anam-engine-<hash>-<suffix>"; None for a whole replicaset
    start: datetime           # tz-aware UTC
    end: datetime
    status: str               # the exit status that is over-represented
    failure_rate: float       # planted rate of `status` inside the window
    baseline: float           # the normal rate of `status` everywhere else
    description: str
    column: str | None = None
    value: str | None = None


def pod_incident(rng: np.random.Generator, topo: Topology, span_ms: int, end_ms: int,
                 baseline: float) -> Incident:
    """A pod of the freshest rollout in the busiest region failing for a 2-4 hour window."""
    region = topo.regions[0]
    newest = topo.replicasets[region][-1]
    pod = newest.pods[int(rng.integers(len(newest.pods)))]
    begin = newest.rolled_out_ms + int(topo.drain_ms * rng.uniform(0.1, 0.4))
    length = int(min(rng.uniform(2, 4) * 3_600_000, span_ms * 0.2))
    finish = min(begin + length, end_ms - 60_000)
    start, end = from_ms(begin), from_ms(finish)
    return Incident(
        kind="pod", region=region, engine_version=newest.version, replicaset=newest.name,
        pod=pod, start=start, end=end, status="ERROR", failure_rate=POD_FAILURE_RATE,
        baseline=baseline, column="engine_pod", value=pod,
        description=(
            f"Pod {pod} of the freshly rolled-out {newest.version} replicaset in region "
            f"{region} ended about {POD_FAILURE_RATE:.0%} of its sessions with ERROR from "
            f"{start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC (normally {baseline:.0%}), while "
            "reconnecting clients kept landing on it."
        ),
    )


def replicaset_incident(topo: Topology, end_ms: int, baseline: float) -> Incident:
    """A whole replicaset in a second region erroring at a modest multiple of the baseline."""
    region, version = topo.regions[1], 1
    rs = topo.replicasets[region][version]
    rate = round(baseline * REPLICASET_EXCESS, 4)
    start, end = from_ms(rs.rolled_out_ms), from_ms(topo.live_until(region, version, end_ms))
    return Incident(
        kind="replicaset", region=region, engine_version=rs.version, replicaset=rs.name,
        pod=None, start=start, end=end, status="ERROR", failure_rate=rate, baseline=baseline,
        column="engine_replicaset", value=rs.name,
        description=(
            f"Every pod of replicaset {rs.name} ({rs.version}, region {region}) ended sessions "
            f"with ERROR about {REPLICASET_EXCESS:g} times as often as the rest of the fleet "
            f"({rate:.1%} against {baseline:.0%}) over its whole life."
        ),
    )


def client_incident(sdk_version: str, start_ms: int, end_ms: int, baseline: float) -> Incident:
    """A client SDK release failing on every pod and in every region, for the whole span."""
    start, end = from_ms(start_ms), from_ms(end_ms)
    return Incident(
        kind="client", region=None, engine_version=None, replicaset=None, pod=None,
        start=start, end=end, status="ERROR", failure_rate=CLIENT_FAILURE_RATE, baseline=baseline,
        column="sdk_version", value=sdk_version,
        description=(
            f"Clients on SDK release {sdk_version} ended about {CLIENT_FAILURE_RATE:.0%} of their "
            f"sessions with ERROR (normally {baseline:.0%}) on every pod, in every region, over "
            "the whole period: a client regression, not an engine one."
        ),
    )


def provider_incident(rng: np.random.Generator, provider: str, start_ms: int, end_ms: int,
                      baseline: float) -> Incident:
    """A TTS provider outage: every persona speaking through `provider` fails for a few hours.

    Placed in the first half of the span, away from the pod incident (which follows the
    newest rollout), so each window is its own.
    """
    span = end_ms - start_ms
    length = int(min(PROVIDER_HOURS * 3_600_000, span * 0.2))
    begin = start_ms + int(span * rng.uniform(0.38, 0.45))
    start, end = from_ms(begin), from_ms(begin + length)
    return Incident(
        kind="provider", region=None, engine_version=None, replicaset=None, pod=None,
        start=start, end=end, status="ERROR", failure_rate=PROVIDER_FAILURE_RATE,
        baseline=baseline, column="tts_provider", value=provider,
        description=(
            f"TTS provider {provider} failed: sessions of every persona speaking through it "
            f"ended about {PROVIDER_FAILURE_RATE:.0%} with ERROR from {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC (normally {baseline:.0%}), on every pod and client: an "
            "upstream outage."
        ),
    )


def fleet_incident(rng: np.random.Generator, start_ms: int, end_ms: int, baseline: float) -> Incident:
    """A fleet-wide outage: every session started in a 40-minute window fails at about
    FLEET_FAILURE_RATE, in every region, on every version, client and provider."""
    span = end_ms - start_ms
    length = int(min(FLEET_MINUTES * 60_000, span * 0.1))
    begin = start_ms + int(span * rng.uniform(0.2, 0.8))
    start, end = from_ms(begin), from_ms(begin + length)
    return Incident(
        kind="fleet", region=None, engine_version=None, replicaset=None, pod=None,
        start=start, end=end, status="ERROR", failure_rate=FLEET_FAILURE_RATE, baseline=baseline,
        column="fleet", value=None,
        description=(
            f"The whole fleet failed: sessions ended about {FLEET_FAILURE_RATE:.0%} with ERROR from "
            f"{start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC (normally {baseline:.0%}), in every "
            "region, on every version, client and provider: a shared dependency down."
        ),
    )
