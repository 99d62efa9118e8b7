"""The failures planted in a demo fleet, so investigations have something real to find."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .timefmt import from_ms
from .topology import Topology

POD_FAILURE_RATE = 0.40
REPLICASET_EXCESS = 2.5


@dataclass(frozen=True)
class Incident:
    """One planted failure: where (region, replicaset, pod), when, and how strong."""

    kind: str                 # "pod" | "replicaset"
    region: str
    engine_version: str
    replicaset: str           # "anam-engine-<hash>", the Kubernetes ReplicaSet name
    pod: str | None           # "anam-engine-<hash>-<suffix>"; None for a whole replicaset
    start: datetime           # tz-aware UTC
    end: datetime
    status: str               # the exit status that is over-represented
    failure_rate: float       # planted rate of `status` inside the window
    baseline: float           # the normal rate of `status` everywhere else
    description: str


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
        baseline=baseline,
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
        description=(
            f"Every pod of replicaset {rs.name} ({rs.version}, region {region}) ended sessions "
            f"with ERROR about {REPLICASET_EXCESS:g} times as often as the rest of the fleet "
            f"({rate:.1%} against {baseline:.0%}) over its whole life."
        ),
    )
