"""A deterministic, production-like fleet of Anam sessions: `generate_fleet` and `Fleet`.

Randomness is drawn in bulk with numpy (one generator per seed), then turned into API-shaped
records in one pass, so 20,000 sessions take well under a second.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from .artifacts import Transcripts
from .incidents import (
    EXTRA_KINDS,
    KINDS,
    Incident,
    client_incident,
    fleet_incident,
    pod_incident,
    provider_incident,
    replicaset_incident,
)
from .latency import LatencyRegression, demo_regression
from .personas import (
    CLIENT_LABELS,
    LABEL_WEIGHTS,
    NEWEST_SDK,
    OUTAGE_PROVIDER,
    SDK_VERSIONS,
    SDK_WEIGHTS,
    TTS,
    USER_AGENTS,
    Cast,
    build_cast,
    client_metadata,
    nanoid,
    persona_config,
    random_uuid,
)
from .timefmt import STYLE_WEIGHTS, format_many, parse_iso, parse_span, to_ms, utc_end
from .topology import Topology, build_topology, engine_host

# Exit statuses and their chances; ERROR's chance is the fleet baseline, NORMAL_EXIT takes the rest.
OTHER_STATUSES = {"CLIENT_DISCONNECTED": 0.245, "CLOSED_BY_ENGINE": 0.035, "TIMEOUT": 0.03,
                  "MAX_DURATION_REACHED": 0.012, "ENGINE_OOM": 0.006}
STATUSES = ("NORMAL_EXIT", "ERROR", *OTHER_STATUSES)
ERROR_BASELINE = 0.04
# Typical length (seconds, log-normal median) per status; MAX_DURATION_REACHED is the persona cap.
MEDIAN_SECONDS = {"NORMAL_EXIT": 180, "ERROR": 40, "CLIENT_DISCONNECTED": 120, "CLOSED_BY_ENGINE": 240,
                  "TIMEOUT": 330, "MAX_DURATION_REACHED": 1800, "ENGINE_OOM": 600}
MAX_SECONDS = 1800
MIN_ACTIVE = 3
UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class _Draw:
    """Per-session random choices, one numpy array each, aligned by position."""

    start: np.ndarray
    region: np.ndarray
    version: np.ndarray
    pod: np.ndarray
    length: np.ndarray        # ms; -1 while active
    status: np.ndarray        # index into STATUSES; -1 while active
    updated: np.ndarray       # ms
    styles: np.ndarray        # index into timefmt.STYLES; whole-second records start on a second
    who: _Who | None = None   # drawn up front when incidents depend on it; else drawn per record


@dataclass
class _Who:
    """Which persona (stateful or not, and which) and SDK release each session uses."""

    stateful: np.ndarray
    persona_pick: np.ndarray
    sdk: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> _Who:
        return cls(rng.random(n) < 0.6, rng.integers(0, 10_000, size=n),
                   rng.choice(len(SDK_VERSIONS), size=n, p=SDK_WEIGHTS))

    def tts_provider(self, cast: Cast) -> np.ndarray:
        """The TTS provider name of each session's persona."""
        def providers(personas: tuple) -> np.ndarray:
            return np.array([TTS[p.tts][0] for p in personas], dtype=object)
        stateful, ephemeral = providers(cast.stateful), providers(cast.ephemeral)
        return np.where(self.stateful, stateful[self.persona_pick % len(stateful)],
                        ephemeral[self.persona_pick % len(ephemeral)])


class _Factory:
    """Turns draws into records; also mints fresh sessions at the head for live traffic."""

    def __init__(self, topo: Topology, cast: Cast) -> None:
        self.topo, self.cast = topo, cast
        self.host_cache = {(r, v, p): engine_host(r, pod)
                           for r, sets in topo.replicasets.items()
                           for v, rs in enumerate(sets) for p, pod in enumerate(rs.pods)}

    def records(self, rng: np.random.Generator, d: _Draw) -> list[dict]:
        cast, n = self.cast, len(d.start)
        ids = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        ids[:, 6] = (ids[:, 6] & 0x0F) | 0x40
        ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80
        hexes = [h.tobytes().hex() for h in ids]
        styles = d.styles
        whole = styles == 1
        start = d.start
        active = d.length < 0
        end = np.where(active, 0, np.where(whole, (start + d.length) // 1000 * 1000, start + d.length))
        length = end - start
        created = np.where(whole, start, start - rng.integers(0, 400, size=n))
        updated = np.where(active, np.maximum(d.updated, start), end + rng.integers(0, 3000, size=n))
        updated = np.where(whole, -(-updated // 1000) * 1000, updated)
        micros = rng.integers(0, 1000, size=n)
        texts = [format_many(a, styles, micros) for a in (start, end, created, updated)]
        who = d.who if d.who is not None else _Who.draw(rng, n)
        stateful, persona_pick, sdks = who.stateful, who.persona_pick, who.sdk
        labels = rng.choice(len(CLIENT_LABELS), size=n, p=LABEL_WEIGHTS)
        keys = rng.choice(len(cast.api_keys), size=n, p=cast.api_key_weights)
        agents = rng.integers(0, len(USER_AGENTS), size=n)
        flavour = rng.random(n)
        oddity = rng.random(n)
        regions, sets = self.topo.regions, self.topo.replicasets
        out = []
        for i in range(n):
            h = hexes[i]
            region = regions[d.region[i]]
            v, p = int(d.version[i]), int(d.pod[i])
            rs = sets[region][v]
            persona = (cast.stateful if stateful[i] else cast.ephemeral)[
                persona_pick[i] % (len(cast.stateful) if stateful[i] else len(cast.ephemeral))]
            host: str | None = self.host_cache[(region, v, p)]
            protocol: str | None = "https"
            version: str | None = rs.version
            odd = oddity[i]
            if odd < 0.006:
                host = protocol = version = None
            elif odd < 0.008:
                host = rs.pods[p]
            elif odd < 0.009:
                host = f"10.{d.region[i] + 10}.{p}.{17 + v}:8443"
            elif odd < 0.010:
                host = f"wss://{host}"
            elif odd > 0.97:
                protocol = "wss"
            is_active = active[i]
            record = {
                "id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                "personaId": persona.id,
                "clientLabel": CLIENT_LABELS[labels[i]],
                "startTime": texts[0][i],
                "endTime": None if is_active else texts[1][i],
                "sessionLengthMs": None if is_active else int(length[i]),
                "exitStatus": None if is_active else STATUSES[d.status[i]],
                "engineHost": host,
                "engineProtocol": protocol,
                "engineVersion": version,
                "clientMetadata": client_metadata(agents[i], sdks[i], flavour[i]),
                "personaConfig": persona_config(persona),
                "apiKeyId": cast.api_keys[keys[i]],
                "organizationId": cast.organization_id,
                "createdAt": texts[2][i],
                "updatedAt": texts[3][i],
            }
            if 0.5 < odd < 0.504:
                del record["clientMetadata"]
            elif 0.6 < odd < 0.605:
                record["tags"] = ["pilot", "β"]
            out.append(record)
        return out

    def mint(self, rng: np.random.Generator, n: int, after_ms: int) -> list[dict]:
        """`n` sessions that just started after `after_ms`, newest first, all still active."""
        styles = _styles(rng, n)
        start = _whole_seconds(after_ms + rng.integers(1000, 4000, size=n).cumsum(), styles)
        region = rng.choice(len(self.topo.regions), size=n, p=self.topo.weights)
        version, pod = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for r, name in enumerate(self.topo.regions):
            mask = region == r
            version[mask], pod[mask] = self.topo.assign(rng, name, start[mask])
        updated = start + rng.integers(0, 1000, size=n)
        draw = _Draw(start, region, version, pod, np.full(n, -1), np.full(n, -1), updated, styles)
        return self.records(rng, draw)[::-1]


class Fleet:
    """Sessions (newest first), their transcripts, and the incidents planted in them."""

    def __init__(self, sessions: Iterable[dict], transcripts: dict | None = None,
                 incidents: Iterable[Incident] = (), *, seed: int = 0,
                 latency_regressions: Iterable[LatencyRegression] = (),
                 _factory: _Factory | None = None) -> None:
        self.sessions: list[dict] = list(sessions)
        for position, record in enumerate(self.sessions):
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise ValueError(f"session {position} has no string 'id' (got {record!r:.80}); "
                                 "every record needs one to be served")
        self.by_id: dict[str, dict] = {r["id"]: r for r in self.sessions}
        self.latency_regressions: tuple[LatencyRegression, ...] = tuple(latency_regressions)
        self.transcripts = (Transcripts(self.by_id, seed, self.latency_regressions) if transcripts is None
                            else dict(transcripts))
        self.incidents: list[Incident] = list(incidents)
        self.seed = seed
        self._factory = _factory

    def __repr__(self) -> str:
        return f"<Fleet {len(self.sessions)} sessions, {len(self.incidents)} incidents, seed={self.seed}>"

    def copy(self) -> Fleet:
        """A fleet sharing the records but with its own lists, so adding sessions stays local."""
        transcripts = None if isinstance(self.transcripts, Transcripts) else self.transcripts
        return Fleet(self.sessions, transcripts, self.incidents, seed=self.seed,
                     latency_regressions=self.latency_regressions, _factory=self._factory)

    def replace(self, record: dict) -> None:
        """Swap in a new version of a record (same id), keeping its place in the order."""
        old = self.by_id[record["id"]]
        self.sessions[next(i for i, r in enumerate(self.sessions) if r is old)] = record
        self.by_id[record["id"]] = record

    def add_sessions(self, n: int, *, seed: int = 0) -> list[dict]:
        """Insert `n` just-started sessions at the head (newest first) and return them.

        The newcomers are drawn from (fleet seed, `seed`), so a caller passing its own
        sequence of seeds gets the same live traffic every run.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n={n!r} is not valid: give the number of sessions to add, an integer >= 0")
        if n == 0:
            return []
        rng = np.random.default_rng([self.seed, seed])
        if self._factory is None:
            now = to_ms(utc_end(None))
            self._factory = _Factory(build_topology(rng, now - 7 * 86_400_000, now), build_cast(rng))
        newest = max((to_ms(parse_iso(r["startTime"])) for r in self.sessions[:50]
                      if isinstance(r.get("startTime"), str)), default=to_ms(utc_end(None)))
        fresh = self._factory.mint(rng, n, newest)
        self.sessions[:0] = fresh
        for record in fresh:
            self.by_id[record["id"]] = record
        return fresh


def _styles(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(len(STYLE_WEIGHTS), size=n, p=STYLE_WEIGHTS)


def _whole_seconds(start: np.ndarray, styles: np.ndarray) -> np.ndarray:
    """Records written with whole-second timestamps really start on a second (keeps order honest)."""
    return np.where(styles == 1, start // 1000 * 1000, start)


def _diurnal_starts(rng: np.random.Generator, n: int, start_ms: int, end_ms: int, peak: float) -> np.ndarray:
    """Start times with more traffic around the region's peak hour (UTC)."""
    minutes = max(1, (end_ms - start_ms) // 60_000)
    grid = start_ms + np.arange(minutes, dtype=np.int64) * 60_000
    hours = (grid // 60_000 % 1440) / 60.0
    cdf = np.cumsum(1.0 + 0.75 * np.cos(2 * np.pi * (hours - peak) / 24))
    picks = np.searchsorted(cdf, rng.random(n) * cdf[-1])
    starts = grid[picks] + rng.integers(0, 60_000, size=n)
    return np.minimum(starts, end_ms - 1)


def _lengths(rng: np.random.Generator, status: np.ndarray) -> np.ndarray:
    medians = np.array([MEDIAN_SECONDS[s] for s in STATUSES], dtype=float)[status]
    seconds = np.exp(np.log(medians) + rng.normal(0, 0.9, size=len(status)))
    seconds = np.clip(seconds, 1.5, MAX_SECONDS - 5)
    capped = np.array(STATUSES)[status] == "MAX_DURATION_REACHED"
    seconds = np.where(capped, MAX_SECONDS + rng.uniform(0, 2, size=len(status)), seconds)
    return (seconds * 1000).astype(np.int64)


def _validate(seed: object, sessions: object, incidents: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid: give an integer >= 0")
    if isinstance(sessions, bool) or not isinstance(sessions, int) or not 0 <= sessions <= 2_000_000:
        raise ValueError(f"sessions={sessions!r} is not valid: give an integer from 0 to 2,000,000")
    if isinstance(incidents, bool):
        return
    kinds = set(incidents) if isinstance(incidents, (list, tuple, set, frozenset)) else None
    if kinds is None or not kinds <= set(KINDS + EXTRA_KINDS):
        raise ValueError(f"incidents={incidents!r} is not valid: give True (all of {', '.join(KINDS)}), "
                         f"False, or a collection of kinds from {', '.join(KINDS + EXTRA_KINDS)}")


def fleet_organization(settings: tuple, drawn: str) -> str:
    """The simulated organisation of one generated fleet: an id derived from every setting that
    shapes the fleet (seed, size, span, end instant, incidents), in the style of `drawn`.

    A session cache is keyed by API base URL and organisation, and a simulator's URL says nothing
    about its fleet (one in-process URL; loopback ports are reused), so the organisation carries
    the fleet's identity: two fleets that differ in any setting never share a cache entry. The
    demo fleet ends "now", so each run of it is an organisation of its own.
    """
    digest = hashlib.sha256(repr(settings).encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return random_uuid(rng) if UUID_SHAPE.match(drawn) else nanoid(rng, len(drawn))


def generate_fleet(seed: int = 0, sessions: int = 5000, span: timedelta | str = "7d",
                   end: datetime | None = None, incidents: bool | Iterable[str] = True) -> Fleet:
    """Build `sessions` records over `span` ending at `end` (now when None), newest first.

    Same arguments → same fleet. `incidents=True` plants one incident of every kind (a failing
    pod, an erroring replicaset, a client SDK regression and a TTS provider outage; see
    `Fleet.incidents` and `simulator.incidents`); a collection such as `{"client"}` plants
    only those kinds; False plants none, and ERROR is equally likely everywhere.

    Parameters
    ----------
    seed, sessions, span, end
        The random seed, the number of sessions, how far back they go and when they end.
    incidents
        True, False, or a collection of kinds from "pod", "replicaset", "client", "provider"
        and "fleet" (a 40-minute outage of every session, planted only when named).

    Returns
    -------
    Fleet
        The sessions, newest first, with their transcripts and the planted incidents.

    Raises
    ------
    ValueError
        For a bad seed, size, span, end or incident kind, naming the value.
    """
    _validate(seed, sessions, incidents)
    span_td = parse_span(span)
    end_ms = to_ms(utc_end(end))
    span_ms = int(span_td.total_seconds() * 1000)
    start_ms = end_ms - span_ms
    rng = np.random.default_rng(seed)
    topo = build_topology(rng, start_ms, end_ms)
    kinds = set(KINDS) if incidents is True else set(incidents or ())
    cast = build_cast(rng)
    cast = replace(cast, organization_id=fleet_organization(
        (seed, sessions, span_ms, end_ms, sorted(kinds), incidents is True), cast.organization_id))
    baseline = ERROR_BASELINE
    planted: list[Incident] = []
    n_surge = 0
    if kinds and sessions >= 20:
        # Drawn in every case so one kind's presence never moves another's.
        failing_pod = pod_incident(rng, topo, span_ms, end_ms, baseline)
        outage = provider_incident(rng, OUTAGE_PROVIDER, start_ms, end_ms, baseline)
        candidates = {"pod": failing_pod, "replicaset": replicaset_incident(topo, end_ms, baseline),
                      "client": client_incident(NEWEST_SDK, start_ms, end_ms, baseline),
                      "provider": outage}
        if "fleet" in kinds:   # its own random numbers: the other kinds' fleets stay the same
            candidates["fleet"] = fleet_incident(np.random.default_rng([seed, 40]), start_ms, end_ms,
                                                 baseline)
        planted = [candidates[k] for k in KINDS + EXTRA_KINDS if k in kinds]
        if "pod" in kinds:
            n_surge = min(sessions // 5, max(60, round(0.025 * sessions)))

    region = rng.choice(len(topo.regions), size=sessions - n_surge, p=topo.weights)
    start = np.zeros(len(region), dtype=np.int64)
    version, pod = np.zeros_like(start), np.zeros_like(start)
    for r, name in enumerate(topo.regions):
        mask = region == r
        start[mask] = _diurnal_starts(rng, int(mask.sum()), start_ms, end_ms, topo.peaks[r])
        version[mask], pod[mask] = topo.assign(rng, name, start[mask])
    if n_surge:
        # Reconnecting clients piling onto the failing pod during its incident window.
        inc = planted[0]  # the pod incident comes first when planted
        sets = topo.replicasets[str(inc.region)]
        r, v = topo.regions.index(inc.region), len(sets) - 1
        p = sets[v].pods.index(inc.pod)
        surge = rng.integers(to_ms(inc.start), to_ms(inc.end), size=n_surge)
        start = np.concatenate([start, surge])
        region = np.concatenate([region, np.full(n_surge, r)])
        version = np.concatenate([version, np.full(n_surge, v)])
        pod = np.concatenate([pod, np.full(n_surge, p)])

    base = [1 - baseline - sum(OTHER_STATUSES.values()), baseline, *OTHER_STATUSES.values()]
    status = rng.choice(len(STATUSES), size=len(start), p=base)
    u = rng.random(len(start))
    who = _Who.draw(np.random.default_rng([seed, len(start)]), len(start))
    for inc in planted:
        hit = (start >= to_ms(inc.start)) & (start < to_ms(inc.end))
        if inc.kind == "client":
            hit &= who.sdk == SDK_VERSIONS.index(str(inc.value).rsplit("@", 1)[1])
        elif inc.kind == "provider":
            hit &= who.tts_provider(cast) == inc.value
        elif inc.kind == "fleet":
            pass
        else:
            r = topo.regions.index(str(inc.region))
            sets = topo.replicasets[str(inc.region)]
            v = next(i for i, rs in enumerate(sets) if rs.name == inc.replicaset)
            hit &= (region == r) & (version == v)
            if inc.pod is not None:
                hit &= pod == sets[v].pods.index(inc.pod)
        promote = (inc.failure_rate - baseline) / (1 - baseline)
        status = np.where(hit & (u < promote), STATUSES.index(inc.status), status)
        # Fresh chances for the next incident, so two incidents on one session add up.
        u = np.where(hit, rng.random(len(start)), u)

    length = _lengths(rng, status)
    styles = _styles(rng, len(start))
    start = _whole_seconds(start, styles)
    order = np.argsort(-start, kind="stable")
    start, region, version, pod, status, length, styles = (
        a[order] for a in (start, region, version, pod, status, length, styles))
    who = _Who(who.stateful[order], who.persona_pick[order], who.sdk[order])
    active = start + length > end_ms
    active[: min(MIN_ACTIVE, len(active))] = True
    length = np.where(active, -1, length)
    status = np.where(active, -1, status)
    updated = start + ((end_ms - start) * rng.random(len(start))).astype(np.int64)
    factory = _Factory(topo, cast)
    records = factory.records(rng, _Draw(start, region, version, pod, length, status, updated, styles, who))
    # The demo's latency regression rides with the full set of incidents (plant_latency_regression
    # plants one anywhere else).
    slow = (demo_regression(topo.replicasets[topo.regions[0]][-1].version),) if incidents is True else ()
    return Fleet(records, None, planted, seed=seed, latency_regressions=slow, _factory=factory)
