"""SessionLookup and SessionExplorer driven without a browser, over real HTTP to the simulator."""

from __future__ import annotations

import copy
import json
import re

import httpx
import pandas as pd
import pytest

from anam_notebooks.api.client import AnamClient
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator import DEMO_API_KEY, Fleet, create_app, demo_client
from anam_notebooks.simulator.artifacts import has_recording, keeps_transcript
from anam_notebooks.widgets import REDACTED, SessionExplorer, SessionLookup, redact

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
UNKNOWN_ID = "8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a6978"


def _ended_with_artifacts(fleet: Fleet) -> dict:
    return next(r for r in fleet.sessions
                if r.get("endTime") and keeps_transcript(r) and has_recording(r)
                and r.get("exitStatus") and len(fleet.transcripts[r["id"]]["messages"]) > 2)


@pytest.fixture(scope="module")
def hostile_fleet(fleet) -> Fleet:
    """A small fleet whose first ended session carries markup and secrets everywhere."""
    records = [copy.deepcopy(r) for r in fleet.sessions[:300]]
    target = _ended_with_artifacts(Fleet(records, seed=fleet.seed))
    target["clientLabel"] = HOSTILE
    target["engineVersion"] = HOSTILE
    config = target.setdefault("personaConfig", {})
    config.update(name=HOSTILE, apiKey="sk-live-123", password="hunter2",
                  elevenLabsToken="tok-999", nested={"client_secret": "s3cr3t", "fps": 25})
    config.setdefault("llmConfig", {})["secret_iv"] = REDACTED
    return Fleet(records, seed=fleet.seed)


@pytest.fixture
def client(sim_app) -> AnamClient:
    return demo_client(sim_app)


@pytest.fixture
def hostile_client(hostile_fleet) -> AnamClient:
    return demo_client(create_app(hostile_fleet))


def _plotly_data(output) -> list:
    (item,) = output.outputs
    return item["data"][PLOTLY_MIME]["data"]


# ---------------------------------------------------------------- lookup: the happy paths

def test_lookup_by_id_shows_card_transcript_figure_and_config(fleet, client):
    record = _ended_with_artifacts(fleet)
    w = SessionLookup(client).lookup(record["id"])
    assert w.session["id"] == record["id"]
    assert record["exitStatus"] in w.card.value and record["engineVersion"] in w.card.value
    pod = record["engineHost"].rsplit("/", 1)[-1]
    assert pod in w.card.value
    rows = w.transcript.value.count("<tr>") - 1
    assert rows == len(fleet.transcripts[record["id"]]["messages"]) == len(w.transcript_df)
    names = {t.get("name") for t in _plotly_data(w.figure_output)}
    assert {"user", "persona"} <= names
    assert "persona config" in w.config.value
    assert w.message.value == "" and not w.recording_button.disabled


def test_typing_and_enter_or_the_button_do_the_same(fleet, client):
    record = _ended_with_artifacts(fleet)
    w = SessionLookup(client)
    w.text.value = record["id"]
    assert w.session["id"] == record["id"]
    w.session = None
    w.button.click()
    assert w.session["id"] == record["id"]


def test_a_url_containing_the_id_works(fleet, client):
    record = _ended_with_artifacts(fleet)
    w = SessionLookup(client).lookup(f"https://lab.anam.ai/sessions/{record['id']}?tab=logs")
    assert w.session["id"] == record["id"]


def test_recording_link_is_fetched_only_on_request(fleet, sim_app):
    record = _ended_with_artifacts(fleet)
    w = SessionLookup(demo_client(sim_app)).lookup(record["id"])
    before = sim_app.state.simulator.stats.copy()
    assert w.recording.value == ""
    w.recording_button.click()
    assert 'href="https://' in w.recording.value and "X-Amz-Signature" in w.recording.value
    assert sum(sim_app.state.simulator.stats.values()) > sum(before.values())


def test_no_recording_and_no_transcript_are_inline_notes(fleet, client):
    record = next(r for r in fleet.sessions if r.get("endTime") and not keeps_transcript(r))
    w = SessionLookup(client).lookup(record["id"])
    assert "No transcript kept" in w.transcript.value
    assert w.card.value and w.figure is not None  # lifecycle still drawn
    assert w.fetch_recording() is None
    assert "No recording kept" in w.recording.value


def test_search_with_several_matches_offers_a_choice(fleet, client):
    label = pd.Series([r.get("clientLabel") for r in fleet.sessions]).value_counts().index[0]
    w = SessionLookup(client).lookup(label)
    assert w.session is None and len(w.match_records) > 1
    assert w.matches.layout.display != "none"
    assert w.matches_table.value.count("<tr>") - 1 == len(w.match_records)
    chosen = w.matches.options[2][1]
    w.matches.value = chosen
    assert w.session["id"] == chosen


def test_search_with_one_match_opens_it(hostile_fleet, hostile_client):
    w = SessionLookup(hostile_client).lookup(HOSTILE)
    assert w.session is not None and w.session["clientLabel"] == HOSTILE


def test_search_without_match_says_so(client):
    w = SessionLookup(client).lookup("no-such-label-anywhere")
    assert "No session matches" in w.message.value and w.session is None


def test_client_is_connected_lazily_on_first_lookup(monkeypatch, capsys):
    monkeypatch.delenv("ANAM_API_KEY", raising=False)
    monkeypatch.delenv("ANAM_API_URL", raising=False)
    w = SessionLookup()
    assert w._client is None
    w.lookup(UNKNOWN_ID)
    assert w._client is not None and "Not found (404)" in w.message.value


# ---------------------------------------------------------------- lookup: error paths

def test_invalid_id_is_an_inline_message(client):
    w = SessionLookup(client).lookup("8f6c2f2e-1c1a-4b7e-9f5e")
    assert "is not a session id" in w.message.value and w.session is None


def test_unknown_uuid_is_a_404_message(client):
    w = SessionLookup(client).lookup(UNKNOWN_ID)
    assert "Not found (404)" in w.message.value and w.card.value == ""


def test_wrong_key_is_a_401_message(fleet, sim_app):
    bad = AnamClient(api_key="wrong-key", transport=httpx.ASGITransport(app=sim_app), max_retries=0)
    w = SessionLookup(bad).lookup(fleet.sessions[0]["id"])
    assert "refused the API key (401)" in w.message.value
    assert "wrong-key" not in w.html


def test_unreachable_api_is_a_network_message(fleet):
    down = AnamClient(api_key=DEMO_API_KEY, base_url="http://127.0.0.1:9", max_retries=0, timeout=5)
    w = SessionLookup(down).lookup(fleet.sessions[0]["id"])
    assert "Could not reach the Anam API" in w.message.value


class _Broken(httpx.AsyncBaseTransport):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self.exc


@pytest.mark.parametrize("exc, shown", [
    (httpx.ConnectError("connection refused"), "Could not reach the Anam API"),
    (RuntimeError("transport exploded"), "Unexpected error"),
])
def test_a_raising_transport_never_leaks_a_traceback(fleet, exc, shown):
    broken = AnamClient(api_key=DEMO_API_KEY, transport=_Broken(exc), max_retries=0)
    w = SessionLookup(broken)
    w.lookup(fleet.sessions[0]["id"])
    assert shown in w.message.value
    w.lookup("anam-lab-chat")
    assert shown in w.message.value


def test_empty_input_asks_for_an_id(client):
    assert "Paste a session id" in SessionLookup(client).lookup("   ").message.value


# ---------------------------------------------------------------- escaping and secrets

def test_hostile_fields_render_as_text_everywhere(hostile_fleet, hostile_client):
    target = next(r for r in hostile_fleet.sessions if r.get("clientLabel") == HOSTILE)
    w = SessionLookup(hostile_client).lookup(target["id"])
    html = w.html
    assert HOSTILE not in html and ESCAPED in html
    for view in (w.card, w.config, w.transcript):
        assert HOSTILE not in view.value
    assert HOSTILE not in json.dumps(w.figure_output.outputs)


def test_transcript_markup_is_escaped(fleet, client):
    sid = next(s for s in fleet.transcripts
               if any(HOSTILE in m["message"] for m in fleet.transcripts[s]["messages"]))
    w = SessionLookup(client).lookup(sid)
    assert ESCAPED in w.transcript.value and HOSTILE not in w.transcript.value
    assert HOSTILE not in json.dumps(w.figure_output.outputs)


def test_persona_config_secrets_are_redacted(hostile_fleet, hostile_client):
    target = next(r for r in hostile_fleet.sessions if r.get("clientLabel") == HOSTILE)
    w = SessionLookup(hostile_client).lookup(target["id"])
    for secret in ("sk-live-123", "hunter2", "tok-999", "s3cr3t"):
        assert secret not in w.config.value and secret not in w.html
    assert w.config.value.count(REDACTED) >= 5
    assert "&quot;fps&quot;: 25" in w.config.value


def test_redact_keeps_non_secrets_and_marks_secret_names():
    config = {"apiKeyId": "abc", "api_key": "k", "secretIv": "[REDACTED]", "temperature": 0.7,
              "credentials": [{"user": "u"}], "list": [{"authToken": "t"}], "missing_key": None}
    assert redact(config) == {"apiKeyId": "abc", "api_key": REDACTED, "secretIv": REDACTED,
                              "temperature": 0.7, "credentials": REDACTED,
                              "list": [{"authToken": REDACTED}], "missing_key": None}


# ---------------------------------------------------------------- static rendering

def test_lookup_static_rendering_and_mimebundle(fleet, client):
    w = SessionLookup(client)
    assert "No session looked up yet" in w._repr_html_()
    w.lookup(_ended_with_artifacts(fleet)["id"])
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html
    assert "<script src=" not in html and "plotly.js v" not in html  # plotly.js embedded once elsewhere


# ---------------------------------------------------------------- explorer

@pytest.fixture(scope="module")
def df(fleet) -> pd.DataFrame:
    return sessions_frame(fleet.sessions)


def test_explorer_starts_with_every_session(df, client):
    e = SessionExplorer(df, client)
    assert len(e.matching) == len(df)
    assert f"{len(df)} of {len(df)} sessions match" in e.summary.value
    lines = [t for t in _plotly_data(e.timeline_output) if t.get("mode") == "lines"]
    assert sum(int(t["name"].rsplit("(", 1)[1].rstrip(")")) for t in lines) == len(df)
    assert e.table.value.count("<tr>") - 1 == e.max_rows
    assert f"newest {e.max_rows} of {len(df)}" in e.table.value


def test_explorer_filters_narrow_table_timeline_and_choices(df, client):
    e = SessionExplorer(df, client)
    e.statuses.value = ("ERROR",)
    assert len(e.matching) == (df["exit_status"] == "ERROR").sum()
    assert set(e.matching["exit_status"].astype(str)) == {"ERROR"}
    region = e.region.options[1][1]
    e.region.value = region
    expected = df[(df["exit_status"] == "ERROR") & (df["engine_region"] == region)]
    assert set(e.matching.index) == set(expected.index)
    assert len(e.select.options) - 1 == min(len(expected), e.max_rows)
    lines = [t for t in e.figure.data if t.mode == "lines"]
    assert [t.legendgroup for t in lines] == ["ERROR"]


def test_explorer_time_range_and_other_dropdowns(df, client):
    e = SessionExplorer(df, client)
    lo, hi = e.time_range.index
    e.time_range.index = (lo, lo + (hi - lo) // 2)
    cut = e._stops[lo + (hi - lo) // 2][1] + (e._stops[1][1] - e._stops[0][1])
    assert len(e.matching) == (df["start_time"] < cut).sum() < len(df)
    for dropdown, column in ((e.version, "engine_version"), (e.pod, "engine_pod"),
                             (e.persona, "persona_name")):
        dropdown.value = dropdown.options[1][1]
        assert set(e.matching[column].astype(str)) <= {dropdown.value}
        dropdown.value = "(all)"


def test_explorer_choosing_a_session_opens_it(df, client):
    e = SessionExplorer(df, client)
    chosen = e.select.options[3][1]
    e.select.value = chosen
    assert e.session_lookup.session["id"] == chosen
    assert chosen in e.html


def test_explorer_missing_pod_values_can_be_selected(df, client):
    e = SessionExplorer(df, client)
    if not df["engine_pod"].isna().any():
        pytest.skip("this fleet has no session without a parsed pod")
    e.pod.value = e.pod.options[-1][1]
    assert len(e.matching) == df["engine_pod"].isna().sum()


def test_explorer_static_rendering_is_escaped(hostile_fleet, hostile_client):
    frame = sessions_frame(hostile_fleet.sessions)
    e = SessionExplorer(frame, hostile_client, tz="Europe/London")
    bundle = e._repr_mimebundle_()
    assert "text/html" in bundle and "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert HOSTILE not in html and ESCAPED in html
    assert 'class="plotly-graph-div"' in html
    # Times to the second in the display zone, the zone named once in the column header.
    assert "start_time (Europe/London)" in html
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", html)
    assert "+00:00" not in html and "+01:00" not in html


def test_explorer_rejects_a_frame_without_the_columns(df):
    with pytest.raises(ValueError, match=r"'exit_status' is not in the frame; valid columns"):
        SessionExplorer(df.drop(columns=["exit_status"]))


def test_explorer_on_an_empty_frame_shows_no_sessions(df):
    e = SessionExplorer(df.iloc[:0])
    assert "0 of 0 sessions match" in e.summary.value
    assert e.figure.layout.annotations[0].text == "no sessions"
    assert e.time_range.disabled and "plotly-graph-div" in e.html


def test_recording_links_only_for_http_urls():
    from anam_notebooks.views.html import link

    assert "<a" not in link("javascript:alert(1)", "x")
    assert link('https://h/r?a=1&b="', "x").startswith('<a href="https://h/r?a=1&amp;b=&quot;"')


def test_buttons_are_sized_to_their_labels_and_headers_never_break_inside_a_word(client):
    """JupyterLab cut "Get recording link" to "Get recording l…" and broke "speaking_duration"."""
    lookup = SessionLookup(client)
    assert lookup.recording_button.layout.width == "auto" and lookup.button.layout.width == "auto"
    from anam_notebooks.views.html import style

    header_rule = re.search(r"table\.anam-table\.anam-table th\{([^}]*)\}", style()).group(1)
    assert "white-space:nowrap" in header_rule and "overflow-wrap:normal" in header_rule
