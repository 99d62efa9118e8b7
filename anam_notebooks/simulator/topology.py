"""Where sessions run: regional gateways, engine replicasets per rollout, and their pods.

Each rollout of an engine version creates a new Kubernetes ReplicaSet (a new 10-character
hash) in every region; traffic moves from the old pods to the new ones over a drain window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Kubernetes' "safe" alphabet for generated name suffixes (no vowels, no 0/1/3).
K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DEPLOYMENT = "anam-engine"
VERSIONS = ("v5.0.3", "v5.1.0", "v5.1.1")
# Region, share of traffic, pods per replicaset, hour of day (UTC) of peak traffic.
REGIONS = (("eu", 0.50, 6, 14.0), ("us", 0.35, 4, 20.0), ("ap", 0.15, 3, 5.0))


def k8s_name(rng: np.random.Generator, length: int) -> str:
    picks = rng.integers(0, len(K8S_ALPHABET), size=length)
    return "".join(K8S_ALPHABET[i] for i in picks)


def gateway(region: str) -> str:
    return f"connect-{region}.anam.ai"


def engine_host(region: str, pod: str) -> str:
    return f"{gateway(region)}/v1/webrtc/engines/{pod}"


@dataclass(frozen=True)
class ReplicaSet:
    region: str
    version: str
    name: str                 # "anam-engine-<hash>"
    pods: tuple[str, ...]     # full pod names "anam-engine-<hash>-<suffix>"
    rollout_ms: int | None    # when traffic starts moving to it; None: running before the span

    @property
    def rolled_out_ms(self) -> int:
        """When the rollout began; only replicasets rolled out inside the span have one."""
        if self.rollout_ms is None:
            raise ValueError(f"replicaset {self.name} was running before the span: it has no rollout time")
        return self.rollout_ms


@dataclass(frozen=True)
class Topology:
    """Replicasets per region (oldest version first) and the rollout timing."""

    regions: tuple[str, ...]
    weights: np.ndarray
    peaks: tuple[float, ...]
    replicasets: dict[str, tuple[ReplicaSet, ...]]
    drain_ms: int

    def assign(self, rng: np.random.Generator, region: str, start_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Version index and pod index for sessions starting at `start_ms` in `region`.

        During a drain window the chance of landing on the new replicaset grows linearly
        from 0 to 1, so old pods empty out gradually.
        """
        sets = self.replicasets[region]
        starts = np.array([rs.rollout_ms for rs in sets[1:]], dtype=np.int64)
        version = np.searchsorted(starts, start_ms, side="right")
        since = start_ms - starts[np.maximum(version - 1, 0)]
        still_old = (version > 0) & (rng.random(len(start_ms)) * self.drain_ms > since)
        version = version - still_old
        sizes = np.array([len(rs.pods) for rs in sets])
        pod = (rng.random(len(start_ms)) * sizes[version]).astype(np.int64)
        return version, pod

    def live_until(self, region: str, version: int, end_ms: int) -> int:
        """When a replicaset's last sessions could start: the end of the next rollout's drain."""
        sets = self.replicasets[region]
        if version + 1 < len(sets):
            return min(end_ms, sets[version + 1].rolled_out_ms + self.drain_ms)
        return end_ms


def build_topology(rng: np.random.Generator, start_ms: int, end_ms: int) -> Topology:
    """Regions with one replicaset per engine version; rollouts spread over the span."""
    span = end_ms - start_ms
    drain = int(min(3 * 3_600_000, span * 0.05))
    stagger = int(min(90 * 60_000, span * 0.02))
    fractions = [0.30 + rng.uniform(-0.04, 0.04), 0.66 + rng.uniform(-0.04, 0.04)]
    replicasets: dict[str, tuple[ReplicaSet, ...]] = {}
    for offset, (region, _, n_pods, _) in enumerate(REGIONS):
        sets = []
        for v, version in enumerate(VERSIONS):
            name = f"{DEPLOYMENT}-{k8s_name(rng, 10)}"
            pods = tuple(f"{name}-{k8s_name(rng, 5)}" for _ in range(n_pods))
            rollout = None if v == 0 else int(start_ms + span * fractions[v - 1] + offset * stagger)
            sets.append(ReplicaSet(region, version, name, pods, rollout))
        replicasets[region] = tuple(sets)
    weights = np.array([w for _, w, _, _ in REGIONS])
    return Topology(
        regions=tuple(r for r, *_ in REGIONS),
        weights=weights / weights.sum(),
        peaks=tuple(p for *_, p in REGIONS),
        replicasets=replicasets,
        drain_ms=max(drain, 1),
    )
