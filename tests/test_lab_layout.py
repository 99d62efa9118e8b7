"""What a person sees of the lookup in a live JupyterLab 4 (Chromium, 1400 px): the recording
button shows its whole label and the notebook's figures draw offline.

One Lab server for the module, its kernels pointed at a small simulator on loopback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.register_assert_rewrite("_jupyterlab")

from _chromium import chromium_path, launch, playwright_sync_api  # noqa: E402
from _jupyterlab import (  # noqa: E402
    ARTIFACTS,
    OFFLINE_ARGS,
    open_notebook,
    run_all_cells,
    running_lab,
    save_screenshot,
)

from anam_notebooks.reports.report import simulator_environment  # noqa: E402

pytest_plugins = ["_jupyterlab"]
pytestmark = pytest.mark.browser

sync_api = playwright_sync_api()
expect = sync_api.expect
NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "01_session_lookup.ipynb"


@pytest.fixture(scope="module")
def page(tmp_path_factory, request):
    chromium_path()
    root = tmp_path_factory.mktemp("lab-layout")
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with simulator_environment(sessions=2000) as (env, _), \
            running_lab(root, tmp_path_factory.mktemp("lab-layout-home"), env) as lab, \
            sync_api.sync_playwright() as playwright:
        browser = launch(playwright, OFFLINE_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        open_notebook(page, lab, NOTEBOOK.name, "layout")
        run_all_cells(page)
        yield page
        expect.set_options(timeout=None)
        if request.session.testsfailed:
            ARTIFACTS.mkdir(exist_ok=True)
            save_screenshot(page, "lab-layout")
        browser.close()


def test_the_recording_button_shows_its_whole_label(page):
    button = page.get_by_role("button", name="Get recording link")
    expect(button).to_be_visible()
    label = button.evaluate("b => [b.scrollWidth, b.clientWidth, b.innerText]")
    assert label[0] <= label[1], f"label cut: needs {label[0]} px, has {label[1]}"
    assert label[2].strip() == "Get recording link"


def test_the_notebook_figures_draw_in_lab(page):
    expect(page.locator(".jp-OutputArea-output .js-plotly-plot svg.main-svg").first).to_be_visible()
