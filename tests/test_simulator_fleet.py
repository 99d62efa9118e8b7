"""The generated fleet looks like production, is deterministic, and carries its incidents."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import chi2_contingency

from anam_notebooks.simulator import Incident, generate_fleet
from anam_notebooks.simulator.timefmt import parse_iso

HASH = "[bcdfghjklmnpqrstvwxz2456789]"
HOST = re.compile(rf"^connect-(eu|us|ap)\.anam\.ai/v1/webrtc/engines/(anam-engine-{HASH}{{10}})-{HASH}{{5}}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
END = datetime(2026, 4, 20, 12, tzinfo=UTC)


def pod_of(record: dict) -> str | None:
    match = HOST.match(record["engineHost"] or "")
    return match.group(0).rsplit("/", 1)[1] if match else None


def test_same_seed_same_fleet_and_another_seed_another():
    one = generate_fleet(seed=3, sessions=800, end=END)
    two = generate_fleet(seed=3, sessions=800, end=END)
    other = generate_fleet(seed=4, sessions=800, end=END)
    assert one.sessions == two.sessions and one.incidents == two.incidents
    assert [dict(one.transcripts[i]) for i in list(one.transcripts)[:20]] == \
           [dict(two.transcripts[i]) for i in list(two.transcripts)[:20]]
    assert {r["id"] for r in one.sessions}.isdisjoint({r["id"] for r in other.sessions})


def test_size_order_span_and_lookup(fleet):
    starts = [parse_iso(r["startTime"]) for r in fleet.sessions]
    assert len(fleet.sessions) == 3000 == len(fleet.by_id)
    assert starts == sorted(starts, reverse=True)
    assert END - timedelta(days=7) <= min(starts) and max(starts) <= END
    assert all(fleet.by_id[r["id"]] is r and UUID.match(r["id"]) for r in fleet.sessions)


@pytest.mark.parametrize("span", ["90m", "24h", timedelta(hours=6)])
def test_spans_and_end_now(span):
    fleet = generate_fleet(seed=1, sessions=400, span=span)
    now = datetime.now(UTC)
    width = span if isinstance(span, timedelta) else {"90m": timedelta(minutes=90), "24h": timedelta(hours=24)}[span]
    starts = [parse_iso(r["startTime"]) for r in fleet.sessions]
    assert now - width - timedelta(seconds=5) <= min(starts) and max(starts) <= now
    assert now - max(starts) < width / 10, "the newest session is close to now"


def test_engine_hosts_regions_replicasets_and_rollouts(fleet):
    parsed = [HOST.match(r["engineHost"] or "") for r in fleet.sessions]
    assert sum(m is not None for m in parsed) / len(parsed) > 0.97
    regions = Counter(m.group(1) for m in parsed if m)
    assert regions["eu"] > regions["us"] > regions["ap"] > 100
    pods_per_set = defaultdict(set)
    versions_per_region = defaultdict(lambda: defaultdict(list))
    for record, match in zip(fleet.sessions, parsed):
        if match:
            pods_per_set[match.group(2)].add(pod_of(record))
            versions_per_region[match.group(1)][record["engineVersion"]].append(parse_iso(record["startTime"]))
    assert len(pods_per_set) == 9, "one replicaset per version and region"
    assert all(len(pods) >= 3 for pods in pods_per_set.values())
    for region, versions in versions_per_region.items():
        assert set(versions) == {"v5.0.3", "v5.1.0", "v5.1.1"}
        first_seen = {v: min(times) for v, times in versions.items()}
        last_seen = {v: max(times) for v, times in versions.items()}
        assert first_seen["v5.0.3"] < first_seen["v5.1.0"] < first_seen["v5.1.1"]
        assert last_seen["v5.0.3"] < last_seen["v5.1.0"], "old pods are drained"
        if region == "eu":  # busy enough to see both replicasets serving during the drain
            assert last_seen["v5.0.3"] > first_seen["v5.1.0"], "...gradually, overlapping the rollout"


def test_odd_records_are_present(fleet):
    hosts = [r["engineHost"] for r in fleet.sessions]
    assert None in hosts
    assert any(h and not HOST.match(h) for h in hosts)
    assert any("clientMetadata" not in r for r in fleet.sessions)
    assert any("tags" in r for r in fleet.sessions)
    protocols = Counter(r["engineProtocol"] for r in fleet.sessions)
    assert protocols.most_common(1)[0][0] == "https" and None in protocols


def test_exit_statuses_active_head_and_lengths(fleet):
    statuses = Counter(r["exitStatus"] for r in fleet.sessions)
    total = len(fleet.sessions)
    assert statuses["NORMAL_EXIT"] / total > 0.5
    assert 0.02 < statuses["ERROR"] / total < 0.12
    assert {"CLIENT_DISCONNECTED", "CLOSED_BY_ENGINE", "TIMEOUT", "MAX_DURATION_REACHED", "ENGINE_OOM"} <= set(statuses)
    active = [i for i, r in enumerate(fleet.sessions) if r["endTime"] is None]
    assert len(active) >= 3 and active[:3] == [0, 1, 2] and max(active) < 50
    for i in active:
        record = fleet.sessions[i]
        assert record["sessionLengthMs"] is None and record["exitStatus"] is None
    lengths = sorted(r["sessionLengthMs"] for r in fleet.sessions if r["sessionLengthMs"] is not None)
    median = lengths[len(lengths) // 2]
    assert 60_000 < median < 400_000 and lengths[-1] > 5 * median, "log-normal-ish: long right tail"


def test_timestamps_mixed_styles_consistent_instants(fleet):
    styles = Counter(("Z" if t.endswith("Z") else t[-6:]) for r in fleet.sessions for t in [r["startTime"]])
    assert {"Z", "+00:00", "+02:00"} <= set(styles)
    assert any(re.search(r":\d\dZ$", r["startTime"]) for r in fleet.sessions), "whole-second precision"
    assert any(re.search(r"\.\d{6}\+00:00$", r["startTime"]) for r in fleet.sessions), "microseconds"
    for r in fleet.sessions:
        start, created, updated = (parse_iso(r[k]) for k in ("startTime", "createdAt", "updatedAt"))
        assert abs(created - start) < timedelta(seconds=1)
        if r["endTime"]:
            end = parse_iso(r["endTime"])
            assert updated >= end
            assert abs((end - start) / timedelta(milliseconds=1) - r["sessionLengthMs"]) <= 1


def test_personas_labels_keys_and_organisation(fleet):
    types = Counter()
    for r in fleet.sessions:
        config = r["personaConfig"]
        types[config["type"]] += 1
        assert (r["personaId"] is None) == (config["type"] == "ephemeral")
        assert config["llmConfig"]["encrypted_secret"] == "[REDACTED]" == config["llmConfig"]["secret_iv"]
        assert {"name", "ttsProvider", "avatarEngineKey", "avatarVersion", "systemPrompt",
                "zeroDataRetention", "fps"} <= set(config)
    assert types["stateful"] > types["ephemeral"] > 500
    assert None in {r["clientLabel"] for r in fleet.sessions}
    assert 3 <= len({r["apiKeyId"] for r in fleet.sessions}) <= 6
    assert len({r["organizationId"] for r in fleet.sessions}) == 1
    assert fleet.sessions[0]["personaConfig"] is not fleet.sessions[1]["personaConfig"]


def test_organisation_ids_are_uuids_in_some_seeds_and_nanoids_in_others():
    kinds = {bool(UUID.match(generate_fleet(seed=s, sessions=30, end=END).sessions[0]["organizationId"]))
             for s in range(8)}
    assert kinds == {True, False}


def test_transcripts_follow_their_sessions(fleet):
    zero = [r for r in fleet.sessions if r["personaConfig"]["zeroDataRetention"]]
    assert zero and all(r["id"] not in fleet.transcripts for r in zero)
    assert len(fleet.transcripts) == len(fleet.sessions) - len(zero)
    interrupted = 0
    for sid in list(fleet.transcripts)[:300]:
        record, transcript = fleet.by_id[sid], fleet.transcripts[sid]
        messages = transcript["messages"]
        assert transcript["totalMessages"] == len(messages)
        assert transcript["durationMs"] == record["sessionLengthMs"]
        assert transcript["personaName"] == record["personaConfig"]["name"]
        start = parse_iso(record["startTime"])
        end = parse_iso(record["endTime"]) if record["endTime"] else datetime.max.replace(tzinfo=UTC)
        for i, message in enumerate(messages):
            assert message["role"] == ("persona" if i % 2 == 0 else "user")
            assert ("wasInterrupted" in message) == (message["role"] == "persona")
            interrupted += message.get("wasInterrupted", False)
            if message["timestamp"]:
                assert start <= parse_iso(message["timestamp"]) <= end
    assert interrupted > 0
    with pytest.raises(KeyError):
        fleet.transcripts[zero[0]["id"]]


def error_rate(records) -> tuple[float, int]:
    records = [r for r in records if r["exitStatus"] is not None]
    return sum(r["exitStatus"] == "ERROR" for r in records) / max(1, len(records)), len(records)


def test_planted_incidents_are_described_and_visible(fleet):
    pod_inc, rs_inc, client_inc, provider_inc = fleet.incidents
    assert [i.kind for i in fleet.incidents] == ["pod", "replicaset", "client", "provider"]
    for inc in fleet.incidents:
        assert isinstance(inc, Incident) and inc.status == "ERROR"
        assert inc.start.tzinfo is not None and inc.start < inc.end
        assert inc.description.endswith(".") and inc.value in inc.description
    for inc in (pod_inc, rs_inc):
        assert re.fullmatch(rf"anam-engine-{HASH}{{10}}", inc.replicaset)
    with pytest.raises(AttributeError):
        pod_inc.kind = "x"
    assert pod_inc.kind == "pod" and pod_inc.pod.startswith(pod_inc.replicaset + "-")
    assert timedelta(hours=2) <= pod_inc.end - pod_inc.start <= timedelta(hours=4)
    assert rs_inc.kind == "replicaset" and rs_inc.pod is None and rs_inc.region != pod_inc.region

    in_window = [r for r in fleet.sessions if pod_of(r) == pod_inc.pod
                 and pod_inc.start <= parse_iso(r["startTime"]) < pod_inc.end]
    rate, n = error_rate(in_window)
    assert n >= 60 and rate > 0.3, (n, rate)
    outside = [r for r in fleet.sessions if pod_of(r) != pod_inc.pod and
               (r["engineHost"] or "").find(rs_inc.replicaset) < 0
               and (r.get("clientMetadata") or {}).get("sdkVersion") != client_inc.value
               and r["personaConfig"]["ttsProvider"] != provider_inc.value]
    baseline, _ = error_rate(outside)
    assert abs(baseline - pod_inc.baseline) < 0.015

    on_rs = [r for r in fleet.sessions if rs_inc.replicaset in (r["engineHost"] or "")]
    rs_rate, rs_n = error_rate(on_rs)
    assert rs_n > 200 and rs_rate > 1.8 * baseline, (rs_n, rs_rate, baseline)


def test_client_and_provider_incidents_hit_every_pod_but_only_their_sessions(fleet):
    client_inc, provider_inc = fleet.incidents[2:]
    assert (client_inc.column, provider_inc.column) == ("sdk_version", "tts_provider")
    assert client_inc.region is None and provider_inc.pod is None
    on_sdk = [r for r in fleet.sessions if (r.get("clientMetadata") or {}).get("sdkVersion") == client_inc.value]
    rate, n = error_rate(on_sdk)
    assert n > 250 and rate > 0.15, (n, rate)
    assert len({pod_of(r) for r in on_sdk if r["exitStatus"] == "ERROR"}) > 15, "on every pod"
    assert timedelta(hours=3) <= provider_inc.end - provider_inc.start <= timedelta(hours=4)
    voiced = [r for r in fleet.sessions if r["personaConfig"]["ttsProvider"] == provider_inc.value]
    assert 0.2 < len(voiced) / len(fleet.sessions) < 0.4, "about a third of the traffic"
    during = [r for r in voiced if provider_inc.start <= parse_iso(r["startTime"]) < provider_inc.end]
    rate, n = error_rate(during)
    assert rate > 0.2, (n, rate)


def test_incident_kinds_can_be_planted_alone():
    only = generate_fleet(seed=3, sessions=800, end=END, incidents={"provider"})
    assert [i.kind for i in only.incidents] == ["provider"]
    with pytest.raises(ValueError, match=r"incidents=\{'moon'\}"):
        generate_fleet(incidents={"moon"})


def test_without_incidents_errors_are_homogeneous_across_pods():
    fleet = generate_fleet(seed=7, sessions=6000, end=END, incidents=False)
    assert fleet.incidents == []
    table = defaultdict(lambda: [0, 0])
    for r in fleet.sessions:
        if r["exitStatus"] is not None and pod_of(r):
            table[pod_of(r)][r["exitStatus"] == "ERROR"] += 1
    _, p_value, _, _ = chi2_contingency(list(table.values()))
    assert p_value > 0.01
    assert max(e / (e + ok) for ok, e in table.values()) < 0.15


@pytest.mark.parametrize("kwargs, fragment", [
    ({"sessions": -1}, "sessions=-1"), ({"sessions": 2.5}, "sessions=2.5"),
    ({"seed": "x"}, "seed='x'"), ({"seed": -3}, "seed=-3"),
    ({"span": "7x"}, "span='7x'"), ({"span": "-2h"}, "span='-2h'"), ({"span": timedelta(0)}, "span="),
    ({"end": "2026-04-20"}, "end='2026-04-20'"), ({"incidents": "yes"}, "incidents='yes'"),
])
def test_bad_arguments_name_the_value(kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        generate_fleet(**kwargs)


def test_small_and_empty_fleets():
    assert generate_fleet(sessions=0, end=END).sessions == []
    tiny = generate_fleet(sessions=5, end=END)
    assert len(tiny.sessions) == 5 and tiny.incidents == []
