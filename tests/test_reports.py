"""Reports: every curated notebook executed by papermill against the simulator on a real loopback
server, rendered to self-contained HTML, and opened offline in headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from anam_notebooks.reports.render import render_html
from anam_notebooks.reports.report import make_report, simulator_environment
from anam_notebooks.simulator import DEMO_FLEET, generate_fleet

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FAKE_KEY = "sk-anam-FAKE-7f3a9c1e-do-not-leak"
PAYLOADS = ['<img src=x onerror="window.__pwned=1;document.title=\'pwned\'">',
            "<script>window.__pwned=2</script>",
            '"><svg onload="window.__pwned=3">']


@pytest.fixture(scope="module")
def fleet():
    """The demo's fleet with script payloads in the client labels of the planted pod's failures,
    so they reach the findings' exemplar tables, the explorer and the timelines."""
    fleet = generate_fleet(**DEMO_FLEET)
    pod = next(i for i in fleet.incidents if i.kind == "pod")
    hits = [r for r in fleet.sessions
            if r.get("exitStatus") == "ERROR" and (r.get("engineHost") or "").endswith(pod.pod)]
    for n, record in enumerate(hits[:30]):
        record["clientLabel"] = PAYLOADS[n % len(PAYLOADS)]
    return fleet


@pytest.fixture(scope="module")
def reports(fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    with simulator_environment(fleet, api_key=FAKE_KEY) as (env, source):
        made = {nb.stem: make_report(nb, out, source=source, env=env) for nb in NOTEBOOKS}
    return made


def _stream_text(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def test_every_notebook_runs_headless_to_a_report(reports):
    for name, report in reports.items():
        assert report.error is None, f"{name}: {report.error}"
        assert report.html.is_file() and report.executed.is_file()


def test_findings_name_the_planted_incidents(reports, fleet):
    pod = next(i for i in fleet.incidents if i.kind == "pod")
    replicaset = next(i for i in fleet.incidents if i.kind == "replicaset")
    for name in ("02_engine_hosts", "03_exit_statuses"):
        text = _stream_text(reports[name].executed)
        findings = text[text.index("stand out"):]
        first = findings.splitlines()[1]
        assert f"pod {pod.pod} in region {pod.region} failed" in first, first
        assert f"replicaset {replicaset.replicaset}" in findings
        assert "UTC vs" in first and "fleet" in first   # the window and the baseline, in words


def test_lookup_notebook_tells_how_the_session_ended(reports):
    text = _stream_text(reports["01_session_lookup"].executed)
    assert re.search(r"Session [0-9a-f-]{36} .* ended \S+ after .* on pod ", text), text


class _Fetches(HTMLParser):
    """Every attribute that would make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name in ("src", "srcset", "data", "poster")
                          or (tag == "link" and name == "href")):
                self.urls.append((tag, value))


def test_reports_fetch_nothing_from_the_network(reports):
    for report in reports.values():
        html = report.html.read_text(encoding="utf-8")
        parser = _Fetches()
        parser.feed(html)
        external = [(t, u) for t, u in parser.urls if not u.startswith(("data:", "#"))]
        assert external == [], f"{report.html.name}: {external[:5]}"
        assert not re.search(r"@import\s+url\(\s*['\"]?https?:", html)


def test_plotlyjs_is_embedded_once_and_the_report_stays_small(reports):
    for report in reports.values():
        html = report.html.read_text(encoding="utf-8")
        assert html.count("plotly.js v") == 1, report.html.name
        assert html.count('class="plotly-graph-div"') >= 1
        assert report.html.stat().st_size < 10_000_000, (report.html.name, report.html.stat().st_size)


def test_header_states_window_source_and_time_and_inputs_are_hidden(reports):
    html = reports["02_engine_hosts"].html.read_text(encoding="utf-8")
    header = html[html.index('class="anam-report-header"'):]
    header = unescape(header[:header.index("</header>")])
    assert "Data window" in header and "since='24h'" in header and "→" in header
    assert "built-in simulator at http://127.0.0.1:" in header
    assert "Generated" in header and " UTC" in header
    assert "hl-ipython3" not in html and "fetch_sessions(" not in html   # no code cell shown


def test_keep_input_shows_the_code(reports):
    html = render_html(reports["02_engine_hosts"].executed, title="Engine hosts", keep_input=True)
    assert "fetch_sessions" in html and "hl-ipython3" in html


def test_the_api_key_reaches_no_output(reports):
    for report in reports.values():
        for path in (report.executed, report.html):
            text = path.read_text(encoding="utf-8")
            assert FAKE_KEY not in text, path.name
            assert "Bearer " not in text, path.name
            assert "Authorization" not in text, path.name


def test_payloads_are_shown_as_text(reports):
    html = reports["02_engine_hosts"].html.read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=" in html or "&amp;lt;img src=x onerror=" in html
    for payload in PAYLOADS:
        assert payload not in html


def _only_local_files(requests: list[str]):
    """A route handler that records every URL asked for and lets only file: URLs through."""
    def handle(route):
        requests.append(route.request.url)
        return route.continue_() if route.request.url.startswith("file:") else route.abort()
    return handle


def _dismiss_into(dialogs: list[str]):
    def handle(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()
    return handle


@pytest.mark.browser
def test_reports_draw_every_figure_offline_and_run_no_payload(reports):
    playwright = pytest.importorskip("playwright.sync_api")
    from _chromium import launch

    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            for report in reports.values():
                context = browser.new_context(offline=True)
                requests: list[str] = []
                context.route("**/*", _only_local_files(requests))
                page = context.new_page()
                dialogs: list[str] = []
                page.on("dialog", _dismiss_into(dialogs))
                page.goto(report.html.as_uri(), wait_until="load")
                figures = page.locator("div.plotly-graph-div")
                count = figures.count()
                assert count >= 1
                page.wait_for_function(
                    "n => document.querySelectorAll('div.plotly-graph-div svg.main-svg').length >= n",
                    arg=count, timeout=60_000)
                drawn = page.evaluate("""() => [...document.querySelectorAll('div.plotly-graph-div')]
                    .filter(d => d.querySelector('svg.main-svg') && d._fullLayout).length""")
                assert drawn == count, f"{report.html.name}: {drawn} of {count} figures drawn"
                assert page.evaluate("() => window.__pwned") is None
                assert dialogs == []
                assert page.title() != "pwned"
                assert [u for u in requests if not u.startswith("file:")] == []
                context.close()
        finally:
            browser.close()


@pytest.mark.slow
def test_cli_report_runs_one_notebook_against_the_configured_api(tmp_path, fleet):
    """`anam-notebooks report NOTEBOOK -p ...` against a loopback server named by the environment."""
    session = next(r for r in fleet.sessions if r.get("exitStatus") == "ERROR")
    with simulator_environment(fleet, api_key=FAKE_KEY) as (env, _):
        result = subprocess.run(
            [sys.executable, "-m", "anam_notebooks", "report", str(NOTEBOOKS[0]),
             "-p", "session_id", session["id"], "-o", str(tmp_path)],
            env={**__import__("os").environ, **env}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    html = tmp_path / "01_session_lookup.html"
    assert str(html) in result.stdout
    text = html.read_text(encoding="utf-8")
    assert session["id"] in text and FAKE_KEY not in text
    assert "Anam API at http://127.0.0.1:" in text


@pytest.mark.slow
def test_notebooks_run_through_an_empty_window_and_a_tiny_one(tmp_path):
    """No sessions, or too few to rank, still gives a report that says so, not a crash."""
    with simulator_environment(sessions=500, span="24h", seed=3) as (env, source):
        for stem, params in (("02_engine_hosts", {"since": "2020-01-01", "until": "2020-01-02"}),
                             ("03_exit_statuses", {"since": "2020-01-01", "until": "2020-01-02"}),
                             ("03_exit_statuses", {"limit": 30})):
            report = make_report(ROOT / "notebooks" / f"{stem}.ipynb", tmp_path / f"{stem}-{len(params)}",
                                 params, source=source, env=env)
            assert report.error is None, (stem, params, report.error)
            if "since" in params:
                assert "No sessions in this window" in _stream_text(report.executed)


def test_conversation_quality_opens_with_the_planted_slowdown(reports, fleet):
    regression, = fleet.latency_regressions
    text = _stream_text(reports["05_conversation_quality"].executed)
    first = next(line for line in text.splitlines() if line.startswith(("Sessions on", "No ")))
    assert first.startswith(f"Sessions on engine_version {regression.engine_version} answer 0."), first
    assert "s slower at the median" in first and "q = " in first
