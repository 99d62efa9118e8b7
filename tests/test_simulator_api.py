"""Conformance of the simulated API with the published OpenAPI document and API.md."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import httpx
import jsonschema
import pytest

from anam_notebooks.simulator import DEMO_API_KEY, Fleet, create_app
from anam_notebooks.simulator.openapi import openapi_document
from anam_notebooks.simulator.timefmt import parse_iso

AUTH = {"Authorization": f"Bearer {DEMO_API_KEY}"}


def validator(name: str) -> jsonschema.protocols.Validator:
    doc = openapi_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    cls = jsonschema.validators.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema"})
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def api(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim", headers=AUTH)


async def all_pages(client: httpx.AsyncClient, per_page: int = 100, **params) -> list[dict]:
    bodies, page = [], 1
    while page is not None:
        response = await client.get("/v1/sessions", params={"page": page, "perPage": per_page, **params})
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        page = bodies[-1]["meta"]["next"]
    return bodies


async def test_openapi_document_is_served_and_keeps_the_published_session_schema(sim_app):
    async with api(sim_app) as client:
        served = (await client.get("/openapi.json", headers={})).json()
    assert served == openapi_document()
    session = served["components"]["schemas"]["Session"]
    assert session["properties"]["id"] == {"type": "string", "format": "uuid",
                                           "description": "Unique identifier for the session."}
    assert session["properties"]["endTime"]["type"] == ["string", "null"]
    assert {"/v1/sessions", "/v1/sessions/{id}", "/v1/sessions/{id}/transcript",
            "/v1/sessions/{id}/recording"} <= set(served["paths"])
    jsonschema.Draft202012Validator.check_schema(session)


def test_the_document_rejects_a_bad_record():
    bad = {"id": "not-a-uuid", "startTime": "yesterday", "sessionLengthMs": "long"}
    errors = list(validator("Session").iter_errors(bad))
    assert {tuple(e.path)[0] for e in errors} == {"id", "startTime", "sessionLengthMs"}


async def test_every_page_and_record_conforms_and_paging_yields_every_id_once(sim_app, fleet):
    page_check, session_check = validator("SessionList"), validator("Session")
    async with api(sim_app) as client:
        bodies = await all_pages(client)
    ids = []
    for number, body in enumerate(bodies, start=1):
        page_check.validate(body)
        assert body["meta"]["currentPage"] == number
        for record in body["data"]:
            session_check.validate(record)
            ids.append(record["id"])
    assert len(ids) == len(set(ids)) == len(fleet.sessions)
    assert ids == [r["id"] for r in fleet.sessions]
    assert bodies[0]["meta"] == {"total": 3000, "lastPage": 30, "currentPage": 1, "perPage": 100,
                                 "prev": None, "next": 2}
    assert bodies[-1]["meta"]["next"] is None and bodies[-1]["meta"]["prev"] == 29


async def test_pages_are_newest_first_by_start_instant(sim_app):
    async with api(sim_app) as client:
        bodies = await all_pages(client)
    starts = [parse_iso(r["startTime"]) for b in bodies for r in b["data"]]
    assert starts == sorted(starts, reverse=True)


async def test_get_transcript_and_recording_conform(sim_app, fleet):
    session_check, transcript_check = validator("Session"), validator("Transcript")
    recording_check = validator("Recording")
    kept = [r for r in fleet.sessions if r["id"] in fleet.transcripts][:40]
    async with api(sim_app) as client:
        for record in kept:
            got = await client.get(f"/v1/sessions/{record['id']}")
            assert got.status_code == 200 and got.json() == record
            session_check.validate(got.json())
            transcript = await client.get(f"/v1/sessions/{record['id']}/transcript")
            assert transcript.status_code == 200
            transcript_check.validate(transcript.json())
            assert transcript.json()["sessionId"] == record["id"]
            recording = await client.get(f"/v1/sessions/{record['id']}/recording")
            if recording.status_code == 200:
                recording_check.validate(recording.json())
                url = recording.json()["recordingUrl"]
                assert url.startswith("https://") and record["id"] in url
                assert "X-Amz-Expires=3600" in url and re.search(r"X-Amz-Signature=[0-9a-f]{64}", url)
            else:
                assert recording.status_code == 404


async def test_transcript_and_recording_404s(sim_app, fleet):
    zero_retention = next(r for r in fleet.sessions if r["personaConfig"]["zeroDataRetention"])
    active = next(r for r in fleet.sessions if r["endTime"] is None)
    async with api(sim_app) as client:
        transcript = await client.get(f"/v1/sessions/{zero_retention['id']}/transcript")
        recording = await client.get(f"/v1/sessions/{active['id']}/recording")
        statuses = Counter()
        for record in fleet.sessions[:300]:
            if record["endTime"] and record["id"] in fleet.transcripts:
                statuses[(await client.get(f"/v1/sessions/{record['id']}/recording")).status_code] += 1
    assert transcript.status_code == 404 and "retention" in transcript.json()["message"]
    assert recording.status_code == 404
    assert statuses[200] > statuses[404] > 0, statuses


@pytest.mark.parametrize("params", [
    {"page": "0"}, {"page": "-1"}, {"page": "1.5"}, {"page": "two"}, {"page": ""},
    {"perPage": "0"}, {"perPage": "101"}, {"perPage": "ten"}, {"perPage": "1e2"},
    {"personaId": "abc"}, {"apiKeyId": "1234"},
])
async def test_bad_queries_are_400_with_a_message_naming_the_value(sim_app, params):
    async with api(sim_app) as client:
        response = await client.get("/v1/sessions", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400 and repr(next(iter(params.values()))) in body["message"]


async def test_defaults_and_a_page_past_the_end(sim_app):
    async with api(sim_app) as client:
        first = (await client.get("/v1/sessions")).json()
        beyond = (await client.get("/v1/sessions", params={"page": 400, "perPage": 100})).json()
    assert len(first["data"]) == 10 and first["meta"]["perPage"] == 10 and first["meta"]["lastPage"] == 300
    assert beyond["data"] == []
    assert beyond["meta"] == {"total": 3000, "lastPage": 30, "currentPage": 400, "perPage": 100,
                              "prev": 399, "next": None}


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/sessions/{id}", "/v1/sessions/{id}/transcript",
                                  "/v1/sessions/{id}/recording"])
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {DEMO_API_KEY}", "Bearer "])
async def test_every_endpoint_wants_the_bearer_key(sim_app, fleet, path, header):
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim_app), base_url="http://sim") as client:
        response = await client.get(path.format(id=fleet.sessions[5]["id"]), headers=headers)
    assert response.status_code == 401
    assert response.json()["statusCode"] == 401 and DEMO_API_KEY not in response.text


async def test_get_400_for_non_uuid_and_404_for_unknown(sim_app):
    async with api(sim_app) as client:
        for suffix in ("", "/transcript", "/recording"):
            bad = await client.get(f"/v1/sessions/not-a-uuid{suffix}")
            unknown = await client.get(f"/v1/sessions/00000000-0000-4000-8000-000000000000{suffix}")
            assert bad.status_code == 400 and "not-a-uuid" in bad.json()["message"]
            assert unknown.status_code == 404


async def test_filters_search_persona_and_api_key(sim_app, fleet):
    persona = next(r["personaId"] for r in fleet.sessions if r["personaId"])
    key = fleet.sessions[0]["apiKeyId"]
    some_id = fleet.sessions[1234]["id"]
    async with api(sim_app) as client:
        by_persona = [r for b in await all_pages(client, personaId=persona.upper()) for r in b["data"]]
        by_key = [r for b in await all_pages(client, apiKeyId=key) for r in b["data"]]
        both = [r for b in await all_pages(client, apiKeyId=key, personaId=persona) for r in b["data"]]
        by_label = [r for b in await all_pages(client, search="KIOSK") for r in b["data"]]
        by_id = (await client.get("/v1/sessions", params={"search": some_id[4:20]})).json()
        nothing = (await client.get("/v1/sessions", params={"search": "no such thing"})).json()
    assert [r["id"] for r in by_persona] == [r["id"] for r in fleet.sessions if r["personaId"] == persona]
    assert [r["id"] for r in by_key] == [r["id"] for r in fleet.sessions if r["apiKeyId"] == key]
    assert [r["id"] for r in both] == [r["id"] for r in fleet.sessions
                                       if r["apiKeyId"] == key and r["personaId"] == persona]
    labels = {r["clientLabel"] for r in by_label}
    assert labels == {"kiosk-frontdesk", 'Café "kiosk" <beta> & co'}
    assert len(by_label) == sum(1 for r in fleet.sessions if "kiosk" in (r["clientLabel"] or "").lower())
    assert [r["id"] for r in by_id["data"]] == [some_id]
    assert nothing["data"] == [] and nothing["meta"]["total"] == 0 and nothing["meta"]["next"] is None


async def test_drift_shifts_page_boundaries_so_pages_overlap(fleet):
    app = create_app(fleet, drift=3)
    async with api(app) as client:
        bodies = await all_pages(client, per_page=50)
    ids = [r["id"] for b in bodies for r in b["data"]]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates, "new sessions at the head should push records onto the next page"
    sim = app.state.simulator
    assert len(sim.fleet.sessions) == len(fleet.sessions) + 3 * len(bodies)
    assert len(fleet.sessions) == 3000, "drift must not leak into the shared fleet"
    assert bodies[-1]["meta"]["total"] == len(sim.fleet.sessions)


async def test_added_sessions_are_newest_active_and_served(sim_app, fleet):
    sim = sim_app.state.simulator
    fresh = sim.add_sessions(4)
    session_check = validator("Session")
    async with api(sim_app) as client:
        head = (await client.get("/v1/sessions", params={"perPage": 5})).json()["data"]
        got = (await client.get(f"/v1/sessions/{fresh[0]['id']}")).json()
        transcript = await client.get(f"/v1/sessions/{fresh[0]['id']}/transcript")
    assert [r["id"] for r in head[:4]] == [r["id"] for r in fresh]
    assert head[4]["id"] == fleet.sessions[0]["id"]
    for record in fresh:
        session_check.validate(record)
        assert record["endTime"] is None and record["exitStatus"] is None
        assert timedelta(0) <= parse_iso(record["updatedAt"]) - parse_iso(record["startTime"]) < timedelta(seconds=2)
    newest_before = parse_iso(fleet.sessions[0]["startTime"])
    assert all(parse_iso(r["startTime"]) > newest_before for r in fresh)
    assert got == fresh[0]
    assert transcript.status_code in (200, 404)


async def test_drift_is_deterministic_per_seed(fleet):
    async def heads(seed: int) -> list[str]:
        app = create_app(fleet, drift=2, seed=seed)
        async with api(app) as client:
            for _ in range(3):
                await client.get("/v1/sessions")
        return [r["id"] for r in app.state.simulator.fleet.sessions[:6]]

    assert await heads(1) == await heads(1) != await heads(2)


async def test_hand_made_odd_records_are_served_verbatim():
    odd = [
        {"id": "11111111-2222-4333-8444-555555555555", "startTime": "2026-04-20T11:00:00+02:00",
         "exitStatus": "SOMETHING_NEW", "engineHost": "10.0.0.1:8443", "surprise": {"nested": [1, None]},
         "clientLabel": "<script>alert('x')</script>", "personaConfig": {"zeroDataRetention": False}},
        {"id": "66666666-7777-4888-9999-000000000000", "startTime": "yesterday-ish", "endTime": 12},
    ]
    app = create_app(Fleet(odd))
    async with api(app) as client:
        page = (await client.get("/v1/sessions", params={"search": "SCRIPT"})).json()
        got = (await client.get(f"/v1/sessions/{odd[1]['id']}")).json()
        transcript = await client.get(f"/v1/sessions/{odd[1]['id']}/transcript")
    assert page["data"] == [odd[0]]
    assert got == odd[1]
    assert transcript.status_code == 200 and transcript.json()["messages"] == []
    with pytest.raises(ValueError, match="session 1 has no string 'id'"):
        Fleet([odd[0], {"startTime": "2026-04-20T11:00:00Z"}])
