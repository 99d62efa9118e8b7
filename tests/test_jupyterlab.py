"""The curated notebooks in a live JupyterLab 4, used the way a person uses them, in Chromium.

One Lab server per module (loopback, token, a temporary root holding copies of the notebooks),
its kernels pointed at a simulator served on loopback from this process. Each test opens a
notebook, runs all cells from the Run menu, then types, presses Enter and picks options in the
widgets, and checks what appears on the page. A failing test leaves a screenshot and the Lab
log in `test-artifacts/`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.register_assert_rewrite("_jupyterlab")   # it is also loaded as a plugin, below

from _chromium import chromium_path, launch, playwright_sync_api  # noqa: E402
from _jupyterlab import (  # noqa: E402
    ARTIFACTS,
    OFFLINE_ARGS,
    drawn_marks,
    failed,
    open_notebook,
    run_all_cells,
    running_lab,
    save_screenshot,
)

from anam_notebooks import AnamClient, NotFoundError, transcript_frame  # noqa: E402
from anam_notebooks.api.config import API_KEY_ENV, API_URL_ENV  # noqa: E402
from anam_notebooks.reports.report import simulator_environment  # noqa: E402

pytest_plugins = ["_jupyterlab"]   # keeps each phase's report so failures get a screenshot
pytestmark = pytest.mark.browser

sync_api = playwright_sync_api()
expect = sync_api.expect

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
# The demo fleet's day of traffic, smaller so kernels and the browser stay quick on 2 cores;
# the planted incidents are still there.
FLEET_SESSIONS = 4000
LOOKUP_PLACEHOLDER = "session id, URL containing one, or client label"
UI_TIMEOUT_MS = 60_000   # a widget round trip (kernel → API → kernel → page) on a busy machine
NOT_AN_ID = "1234-5678-abcd-ef00"


@pytest.fixture(scope="module")
def simulator():
    """The simulator on loopback: the kernel environment pointing at it."""
    with simulator_environment(sessions=FLEET_SESSIONS) as (env, _source):
        yield env


@pytest.fixture(scope="module")
def lab(simulator, tmp_path_factory):
    chromium_path()   # skip (or, under CI, fail) before starting a server nobody can open
    root = tmp_path_factory.mktemp("lab-root")
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    with running_lab(root, tmp_path_factory.mktemp("lab-home"), simulator) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright, OFFLINE_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def external_requests() -> list[str]:
    """Every request the page made to anything but the Lab server (should stay empty)."""
    return []


@pytest.fixture
def page(browser, lab, external_requests, request):
    """A fresh page; on failure, a screenshot and the Lab log land in test-artifacts/."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.on("request", lambda r: None if r.url.startswith((lab.url, "blob:", "data:"))
               else external_requests.append(r.url))
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    yield page
    expect.set_options(timeout=None)   # back to Playwright's default for other modules
    if failed(request.node):
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{request.node.name}-jupyterlab.log").write_text(lab.log_tail(200_000),
                                                                        encoding="utf-8")
        save_screenshot(page, request.node.name)
    context.close()


def _session_with_transcript(env: dict[str, str]) -> tuple[str, list[str]]:
    """A recent normally-ended session that kept a transcript: its id and its message texts.

    The notebook opens on the newest failed session, so this one is a different session."""
    with AnamClient(env[API_KEY_ENV], env[API_URL_ENV]) as client:
        for record in client.list_sessions(page=1, per_page=100)["data"]:
            if record.get("exitStatus") != "NORMAL_EXIT":
                continue
            try:
                turns = transcript_frame(client.get_transcript(record["id"]))
            except NotFoundError:
                continue
            if len(turns) >= 2:
                return record["id"], [str(t) for t in turns["text"]]
    raise AssertionError("the simulator's newest 100 sessions hold no ended session with a transcript")


def test_lookup_shows_a_typed_session_and_an_inline_error(page, lab, simulator, external_requests):
    session_id, texts = _session_with_transcript(simulator)
    open_notebook(page, lab, "01_session_lookup.ipynb", "lookup")
    run_all_cells(page)

    text_input = page.get_by_placeholder(LOOKUP_PLACEHOLDER)
    widget = page.locator(".jp-OutputArea-output").filter(has=text_input)
    card_title = widget.locator(".anam-card strong")
    expect(card_title).to_have_count(1)   # the notebook's own session, looked up in the cell
    assert session_id not in card_title.inner_text()

    text_input.fill(session_id)
    text_input.press("Enter")

    expect(card_title).to_have_text(f"Session {session_id}")
    expect(widget.locator(".anam-card")).to_contain_text("NORMAL_EXIT")
    transcript = widget.locator("table.anam-table")
    expect(transcript.locator("thead")).to_contain_text("role")
    expect(transcript.locator("tbody tr")).to_have_count(len(texts))
    expect(transcript.locator("tbody")).to_contain_text(texts[0])
    figure = widget.locator(".widget-output .js-plotly-plot")
    expect(figure.locator("svg.main-svg").first).to_be_visible()
    expect(figure.locator(".gtitle")).to_have_text(f"Session {session_id}")
    assert drawn_marks(figure) > 0, "the transcript figure drew nothing"

    text_input.fill(NOT_AN_ID)
    text_input.press("Enter")

    error = widget.locator(".anam-msg-error")
    expect(error).to_contain_text(f"'{NOT_AN_ID}' is not a session id")
    expect(error).to_be_visible()
    expect(error).to_have_css("background-color", "rgb(253, 236, 234)")   # shown as an error
    expect(widget.locator(".anam-card")).to_have_count(0)
    expect(widget.locator(".widget-output svg.main-svg")).to_have_count(0)
    assert external_requests == []


def _summary_counts(summary) -> tuple[int, int]:
    found = re.match(r"(\d+) of (\d+) sessions match", summary.inner_text())
    assert found, summary.inner_text()
    return int(found.group(1)), int(found.group(2))


def _column(table, name: str) -> list[str]:
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    position = headers.index(name) + 1
    return table.locator(f"tbody tr > :nth-child({position})").all_inner_texts()


def test_engine_hosts_draws_figures_and_the_explorer_filters(page, lab, external_requests):
    open_notebook(page, lab, "02_engine_hosts.ipynb", "engine-hosts")
    run_all_cells(page)

    figures = page.locator(".jp-Notebook .jp-OutputArea-output.js-plotly-plot")
    expect(figures).to_have_count(3)   # health map, suspect timeline, explorer timeline
    titles = []
    for n in range(3):
        expect(figures.nth(n).locator("svg.main-svg").first).to_be_visible()
        titles.append(figures.nth(n).locator(".gtitle").text_content())
        assert drawn_marks(figures.nth(n)) > 0, f"{titles[-1]!r} drew nothing"
    assert titles[0].startswith("Failure rate by engine_pod"), titles
    assert all(t.startswith("Sessions by engine_pod") for t in titles[1:]), titles

    summary = page.locator(".anam-msg-info", has_text="sessions match")
    explorer = page.locator(".jp-OutputArea-output").filter(has=summary)
    table = explorer.locator("table.anam-table").first
    timeline = explorer.locator(".widget-output .js-plotly-plot").first
    total_shown, total = _summary_counts(summary)
    assert total_shown == total > 0
    expect(timeline.locator(".gtitle")).to_have_text(f"Sessions by engine_pod ({total} sessions)")
    assert len(set(_column(table, "engine_region"))) > 1

    region = explorer.get_by_label("Region", exact=True)
    choice = next(v for v in region.locator("option").all_inner_texts()
                  if not v.startswith("("))
    region.select_option(choice)

    expect(summary).not_to_have_text(re.compile(rf"^{total} of {total} "))
    in_region, _ = _summary_counts(summary)
    assert 0 < in_region < total
    expect(timeline.locator(".gtitle")).to_have_text(f"Sessions by engine_pod ({in_region} sessions)")
    assert set(_column(table, "engine_region")) == {choice}
    assert drawn_marks(timeline) > 0, "the filtered timeline drew nothing"

    explorer.get_by_label("Exit status", exact=True).select_option(["ERROR"])

    expect(summary).to_contain_text(re.compile(r"by exit status: ERROR \d+$"))
    errors_in_region, _ = _summary_counts(summary)
    assert 0 < errors_in_region < in_region
    expect(timeline.locator(".gtitle")).to_have_text(
        f"Sessions by engine_pod ({errors_in_region} sessions)")
    assert set(_column(table, "exit_status")) == {"ERROR"}
    assert set(_column(table, "engine_region")) == {choice}
    assert external_requests == []
