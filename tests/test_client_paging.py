"""iter_sessions: every page, each id once, exact under drift, early stop on a budget, and
nothing lost when pages fail. Real HTTP to the simulator in-process, or respx for odd servers."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from anam_notebooks import AuthenticationError, PaginationError
from anam_notebooks.api.client import AnamClient, AsyncAnamClient, Backoff
from anam_notebooks.simulator import DEMO_API_KEY, create_app

FLEET_END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)  # the shared fleet ends here

SIM = "http://simulator"
BASE = "https://api.test"


async def _no_wait(seconds: float) -> None:
    return None


def sim_client(app, cls=AnamClient, **kw):
    return cls(DEMO_API_KEY, SIM, transport=httpx.ASGITransport(app=app),
               backoff=Backoff(sleep=_no_wait), **kw)


def list_requests(app) -> int:
    return app.state.simulator.stats["list"]


def test_reads_every_session_once_newest_first(fleet, sim_app):
    with sim_client(sim_app) as client:
        ids = [s["id"] for s in client.iter_sessions()]
    assert ids == [s["id"] for s in fleet.sessions]
    assert list_requests(sim_app) == math.ceil(len(fleet.sessions) / 100)


def test_filters_and_page_size_are_passed_on(fleet, sim_app):
    persona = next(s["personaId"] for s in fleet.sessions if s.get("personaId"))
    expected = [s["id"] for s in fleet.sessions if s.get("personaId") == persona]
    with sim_client(sim_app) as client:
        got = [s["id"] for s in client.iter_sessions(persona_id=persona.upper(), per_page=7)]
    assert got == expected
    assert list_requests(sim_app) == math.ceil(len(expected) / 7)


def test_list_sessions_returns_one_raw_page(fleet, sim_app):
    with sim_client(sim_app) as client:
        page = client.list_sessions(page=3, per_page=25)
    assert [s["id"] for s in page["data"]] == [s["id"] for s in fleet.sessions[50:75]]
    assert page["meta"]["total"] == len(fleet.sessions) and page["meta"]["currentPage"] == 3


@pytest.mark.parametrize("per_page,drift", [(100, 3), (37, 5), (100, 40)])
def test_exact_under_live_drift(fleet, per_page, drift):
    app = create_app(fleet, drift=drift)
    with sim_client(app) as client:
        ids = [s["id"] for s in client.iter_sessions(per_page=per_page)]
    server_ids = set(app.state.simulator.fleet.by_id)
    assert len(ids) == len(set(ids))
    assert set(ids) == server_ids and len(server_ids) > len(fleet.sessions)


async def test_async_client_iterates_with_async_for(fleet):
    app = create_app(fleet, drift=2)
    async with sim_client(app, AsyncAnamClient) as client:
        ids = [s["id"] async for s in client.iter_sessions()]
        first = await client.get_session(ids[-1])
    assert set(ids) == set(app.state.simulator.fleet.by_id) and len(ids) == len(set(ids))
    assert first["id"] == ids[-1]


@pytest.mark.parametrize("new", [0, 1, 99, 100, 101, 250, 420])
def test_stop_refreshes_within_the_request_budget(fleet, sim_app, new):
    stored = set(fleet.by_id)
    fresh = {s["id"] for s in sim_app.state.simulator.add_sessions(new)}
    with sim_client(sim_app) as client:
        ids = [s["id"] for s in client.iter_sessions(stop=lambda s: s["id"] in stored)]
    assert fresh <= set(ids) and len(ids) == len(set(ids))
    assert len(ids) < len(stored)
    assert list_requests(sim_app) <= math.ceil(new / 100) + 2


def test_stop_is_exact_under_drift(fleet):
    app = create_app(fleet, drift=7)
    stored = set(fleet.by_id)
    fresh = {s["id"] for s in app.state.simulator.add_sessions(330)}
    with sim_client(app) as client:
        ids = [s["id"] for s in client.iter_sessions(stop=lambda s: s["id"] in stored)]
    arrived = set(app.state.simulator.fleet.by_id) - stored
    assert fresh <= arrived <= set(ids) and len(ids) == len(set(ids))


def test_since_stops_after_the_window(fleet, sim_app):
    since = FLEET_END - timedelta(hours=12)
    with sim_client(sim_app) as client:
        got = list(client.iter_sessions(since=since))
    wanted = {s["id"] for s in fleet.sessions
              if datetime.fromisoformat(s["startTime"]) >= since}
    assert wanted <= {s["id"] for s in got}
    pages_needed = math.ceil(len(wanted) / 100) + 1
    assert list_requests(sim_app) <= pages_needed + 3 < math.ceil(len(fleet.sessions) / 100)


def _fake_list(records: list[dict], *, fail: dict[int, int] | None = None, meta: bool = True,
               total: int | None = None):
    """A respx side effect paging `records` as given; `fail[page]` = how many 500s it gives."""
    failures = dict(fail or {})
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        page, per = int(request.url.params["page"]), int(request.url.params["perPage"])
        calls.append(page)
        if failures.get(page, 0):
            failures[page] -= 1
            return httpx.Response(500, json={"message": f"page {page} broke"})
        count = len(records) if total is None else total
        body: dict = {"data": records[(page - 1) * per: page * per]}
        if meta:
            body["meta"] = {"total": count, "lastPage": max(1, math.ceil(count / per))}
        return httpx.Response(200, json=body)

    return answer, calls


def _records(n: int, start: datetime = FLEET_END) -> list[dict]:
    return [{"id": f"00000000-0000-4000-8000-{i:012d}",
             "startTime": (start - timedelta(minutes=i)).isoformat()} for i in range(n)]


@pytest.fixture
def api():
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def fake_client(**kw) -> AnamClient:
    return AnamClient("sk-test-key", BASE, backoff=Backoff(sleep=_no_wait), **kw)


def test_failed_page_raises_pagination_error_keeping_the_rest(api):
    records = _records(450)
    answer, calls = _fake_list(records, fail={3: 1000})
    api.get("/v1/sessions").mock(side_effect=answer)
    got: list[dict] = []
    with fake_client() as client, pytest.raises(PaginationError) as info:
        for record in client.iter_sessions():
            got.append(record)
    exc = info.value
    assert exc.failed_pages == [3] and isinstance(exc.causes[3], Exception)
    expected = {r["id"] for r in records[:200] + records[300:]}
    assert {r["id"] for r in got} == expected == set(exc.ids)
    assert "page 3 broke" in str(exc)


def test_page_recovered_by_a_later_read_is_not_an_error(api):
    records = _records(450)
    answer, calls = _fake_list(records, fail={3: 5})   # the first read spends all 5 attempts
    api.get("/v1/sessions").mock(side_effect=answer)
    with fake_client() as client:
        ids = [r["id"] for r in client.iter_sessions()]
    assert sorted(ids) == sorted(r["id"] for r in records) and calls.count(3) == 6


def test_first_page_failure_raises_the_typed_error(api):
    api.get("/v1/sessions").mock(return_value=httpx.Response(401, json={"message": "bad key"}))
    with fake_client() as client, pytest.raises(AuthenticationError):
        list(client.iter_sessions())


def test_empty_page_ends_the_list_whatever_meta_says(api, caplog):
    records = _records(250)
    answer, calls = _fake_list(records, total=900)   # meta claims 9 pages
    api.get("/v1/sessions").mock(side_effect=answer)
    with fake_client() as client:
        ids = [r["id"] for r in client.iter_sessions()]
    assert ids == [r["id"] for r in records]
    assert max(calls) <= 9 and "empty page" in caplog.text


def test_without_meta_pages_until_a_short_page(api):
    records = _records(730)
    answer, calls = _fake_list(records, meta=False)
    api.get("/v1/sessions").mock(side_effect=answer)
    with fake_client(concurrency=3) as client:
        ids = [r["id"] for r in client.iter_sessions()]
    assert ids == [r["id"] for r in records] and max(calls) <= 10


def test_since_falls_back_to_a_full_scan_when_order_breaks(api, caplog):
    records = _records(600)
    records[350], records[360] = records[360], records[350]   # out of order on page 4
    answer, calls = _fake_list(records)
    api.get("/v1/sessions").mock(side_effect=answer)
    since = FLEET_END - timedelta(minutes=50)   # would stop after page 2
    with fake_client() as client:
        ids = {r["id"] for r in client.iter_sessions(since=since, per_page=50)}
    assert "not newest-first" not in caplog.text and len(ids) <= 200
    caplog.clear()
    since = FLEET_END - timedelta(minutes=500)   # must cross page 8: sees the disorder
    with fake_client() as client:
        ids = {r["id"] for r in client.iter_sessions(since=since, per_page=50)}
    assert "not newest-first" in caplog.text and ids == {r["id"] for r in records}


def test_odd_records_do_not_crash(api, caplog):
    data = [{"id": "00000000-0000-4000-8000-000000000001", "startTime": "not a time"}, "junk", None,
            {"clientLabel": "no id at all"}, {"id": 5}, {"id": "00000000-0000-4000-8000-000000000001"}]
    api.get("/v1/sessions").mock(return_value=httpx.Response(
        200, json={"data": data, "meta": {"total": 6, "lastPage": 1}}))
    with fake_client() as client:
        got = list(client.iter_sessions(since=FLEET_END))
    assert got == [data[0], data[3], data[4]]
    assert "not session objects" in caplog.text


def test_breaking_out_early_leaves_the_client_usable(fleet):
    app = create_app(fleet, latency=0.002)
    with sim_client(app) as client:
        for i, _ in enumerate(client.iter_sessions()):
            if i == 5:
                break
        assert client.get_session(fleet.sessions[0]["id"])["id"] == fleet.sessions[0]["id"]


def test_stop_callback_calling_the_sync_client_fails_clearly(fleet, sim_app):
    with sim_client(sim_app) as client:
        with pytest.raises(RuntimeError, match="AsyncAnamClient"):
            list(client.iter_sessions(stop=lambda s: bool(client.get_session(s["id"]))))


def test_debug_log_names_requests(fleet, sim_app, caplog):
    caplog.set_level(logging.DEBUG, logger="anam_notebooks")
    with sim_client(sim_app) as client:
        client.list_sessions(page=2)
    assert "GET /v1/sessions?page=2&perPage=100 -> 200 (attempt 1" in caplog.text


def test_drift_repair_reads_little_more_than_a_pass(fleet):
    app = create_app(fleet, drift=3)
    with sim_client(app) as client:
        assert len(list(client.iter_sessions())) == len(app.state.simulator.fleet.by_id)
    assert list_requests(app) <= math.ceil(len(fleet.sessions) / 100) * 1.5


def test_since_must_be_aware(sim_app):
    with sim_client(sim_app) as client, pytest.raises(ValueError, match="timezone-aware"):
        client.iter_sessions(since=datetime(2026, 1, 1))


@pytest.mark.parametrize("says_per_page", [True, False])
def test_a_server_that_pages_by_fewer_records_than_asked_is_read_whole(api, caplog, says_per_page):
    """Asked for 100 a page, this server serves 50 (and may or may not say so in meta)."""
    records = _records(237)
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        calls.append(page)
        meta = {"total": len(records), "lastPage": math.ceil(len(records) / 50)}
        if says_per_page:
            meta["perPage"] = 50
        return httpx.Response(200, json={"data": records[(page - 1) * 50: page * 50], "meta": meta})

    api.get("/v1/sessions").mock(side_effect=answer)
    caplog.set_level(logging.INFO, logger="anam_notebooks")
    with fake_client() as client:
        ids = [r["id"] for r in client.iter_sessions()]
    assert ids == [r["id"] for r in records]
    assert sorted(calls) == [1, 2, 3, 4, 5]   # one read per page, no repair rounds
    assert "pages by 50 records" in caplog.text


@pytest.mark.parametrize("drift", [0, 3])
def test_a_read_resumed_from_stored_positions_reads_only_the_rest(fleet, drift):
    from anam_notebooks.api.paging import Coverage

    app = create_app(fleet, drift=drift, seed=1)
    with sim_client(app) as client:
        stored, done = [], Coverage()
        for number, batch in enumerate(client.iter_session_pages(), 1):
            stored += [r["id"] for r in batch]
            done.add(*batch.span)
            if number == 12:
                break  # interrupted after 12 of 30 pages
        app.state.simulator.reset_stats()
        rest = [r["id"] for batch in client.iter_session_pages(resume=done) for r in batch]
    assert not set(stored) & set(rest) and len(rest) == len(set(rest))
    assert set(stored) | set(rest) == set(app.state.simulator.fleet.by_id)
    # page 1, the 18 pages not stored (and what drift pushed across), a repair round at most
    assert list_requests(app) <= 1 + 18 + 2 + 4 * (drift > 0)


def _shifting_list(records: list[dict], arrivals: list[dict], per_request: int):
    """A respx side effect: a newest-first list that gains `per_request` of `arrivals` at its
    head before every answer after the first, pushing records across page boundaries."""
    state = {"shown": 0, "requests": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        if state["requests"]:
            state["shown"] = min(len(arrivals), state["shown"] + per_request)
        state["requests"] += 1
        visible = arrivals[len(arrivals) - state["shown"]:] + records
        page, per = int(request.url.params["page"]), int(request.url.params["perPage"])
        return httpx.Response(200, json={"data": visible[(page - 1) * per: page * per],
                                         "meta": {"total": len(visible),
                                                  "lastPage": max(1, math.ceil(len(visible) / per))}})

    return answer


@pytest.mark.parametrize("chunk", [3, 64, 65_536])
def test_an_id_read_on_two_pages_counts_once_and_near_identical_ids_all_count(api, monkeypatch, chunk):
    """Sessions pushed across page boundaries are read twice and handed on once, whether the
    id set holds them in its compact arrays (merged every `chunk` ids) or still as recent ones;
    ids that share their first or last 64 bits, or differ only in spelling, or are not UUIDs at
    all, are distinct sessions and every one is kept."""
    from anam_notebooks.api import paging

    monkeypatch.setattr(paging, "SEEN_CHUNK", chunk)
    records = _records(300)  # every id shares its first 64 bits with every other
    records[10:20] = [{"id": f"{i:08x}-0000-4000-8000-000000000005", "startTime": r["startTime"]}
                      for i, r in enumerate(records[10:20], 1)]  # ... and these their last 64 bits
    records[31]["id"] = "abcdef01-0000-4000-8000-000000000031"
    records[30]["id"] = records[31]["id"].upper()  # another spelling: another id, as the API sent it
    records[40]["id"], records[41]["id"] = "session-40", "session-41"  # not UUIDs
    records[50]["id"] = "00000000-0000-0000-0000-000000000000"  # the smallest id there is
    for k in range(100, 200):  # same first 64 bits and last byte, the rest read in descending order
        records[k]["id"] = f"00000000-0000-4000-9000-{(300 - k) * 256:012x}"
    arrivals = [{"id": f"ffffffff-ffff-4fff-8fff-{i:012x}", "startTime": (FLEET_END + timedelta(minutes=i)).isoformat()}
                for i in range(60, 0, -1)]
    api.get("/v1/sessions").mock(side_effect=_shifting_list(records, arrivals, per_request=7))
    with fake_client(concurrency=2) as client:
        ids = [r["id"] for r in client.iter_sessions(per_page=25)]
    expected = {r["id"] for r in records + arrivals}
    assert len(expected) == 360
    assert len(ids) == len(set(ids)) == 360 and set(ids) == expected


def test_pagination_error_lists_every_id_read_from_the_compact_set(api, monkeypatch):
    """The ids a PaginationError carries come back from the compact set as the exact strings."""
    from anam_notebooks.api import paging

    monkeypatch.setattr(paging, "SEEN_CHUNK", 16)
    records = _records(450)
    records[7]["id"] = "not-a-uuid"
    answer, _ = _fake_list(records, fail={3: 1000})
    api.get("/v1/sessions").mock(side_effect=answer)
    got: list[dict] = []
    with fake_client() as client, pytest.raises(PaginationError) as info:
        for record in client.iter_sessions():
            got.append(record)
    expected = {r["id"] for r in records[:200] + records[300:]}
    assert {r["id"] for r in got} == expected and sorted(info.value.ids) == sorted(expected)
