"""A private JupyterLab 4 server for browser tests, and the few UI moves a person makes in it.

`running_lab` starts `jupyter lab` on loopback (free port, random token, no browser, its own
config/data/settings directories, news and update checks off, no notebook virtualisation so every
cell is in the page). The page helpers open a notebook, run all cells from the Run menu and wait
until every code cell has run. Loaded as a pytest plugin by the browser tests so a failing test's
page can be screenshot into `test-artifacts/`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
START_TIMEOUT = 120.0        # seconds for the server to answer, generous for a busy 2-core machine
KERNEL_TIMEOUT_MS = 240_000  # starting a kernel and running a whole notebook

# Lab plugins that would fetch from the internet (news, update checks).
DISABLED_PLUGINS = ["@jupyterlab/apputils-extension:announcements"]
# User settings: every cell stays in the DOM (no windowing), no news, no update checks.
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab server: where it listens, its token and its log file."""

    url: str
    token: str
    log: Path

    def notebook_url(self, name: str, workspace: str) -> str:
        """The address that opens `name` alone in a fresh workspace (no restored tabs)."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_config(home: Path) -> dict[str, str]:
    """Private Jupyter directories with the settings above; returns the environment naming them."""
    dirs = {name: home / name for name in ("config", "data", "runtime", "settings", "workspaces",
                                           "ipython")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    labconfig = dirs["config"] / "labconfig"
    labconfig.mkdir(exist_ok=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {p: True for p in DISABLED_PLUGINS}}), encoding="utf-8")
    for relative, values in USER_SETTINGS.items():
        path = dirs["settings"] / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    return {"JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTER_PLATFORM_DIRS": "1"}


def _wait_until_up(process: subprocess.Popen, url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n"
                                   + log.read_text(errors="replace")[-4000:])
            try:
                if http.get(f"{url}/api/status", params={"token": token}).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)   # polling the server's status until it answers
    raise RuntimeError(f"jupyter lab did not answer on {url} within {START_TIMEOUT:.0f} s:\n"
                       + log.read_text(errors="replace")[-4000:])


@contextmanager
def running_lab(root: Path, home: Path, env: Mapping[str, str]) -> Iterator[Lab]:
    """Serve `root` with JupyterLab on 127.0.0.1 for the block; kernels inherit `env`."""
    port, token = free_port(), secrets.token_hex(24)
    url = f"http://127.0.0.1:{port}"
    log = home / "jupyterlab.log"
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("JUPYTER", "ANAM_", "IPYTHON"))}
    environment.update(_write_config(home))
    environment.update(env)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
               "--ServerApp.terminals_enabled=False",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")   # containers and CI runners often run as root
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=root, env=environment, stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_until_up(process, url, token, log)
        yield Lab(url, token, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- page moves

# Offline: any host but loopback fails to resolve in the browser.
OFFLINE_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# 'idle' once the notebook's kernel is started and idle; 'dialog' while a Lab dialog is open.
_KERNEL_STATE = """() => {
    if (document.querySelector('.jp-Dialog')) return 'dialog';
    const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName');
    const state = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
    return !!name && !!state && !/no kernel/i.test(name.getAttribute('aria-label') || '')
        && state.dataset.status === 'idle' && 'idle';
}"""

# True once every code cell shows an execution count; a string when a cell raised.
_RUN_STATE = """() => {
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
        .map(p => p.textContent.trim());
    if (prompts.length === 0 || prompts.some(p => p.includes('*'))) return false;
    const errors = [...document.querySelectorAll(
        '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(o => o.textContent).filter(t => t.includes('Traceback'));
    if (errors.length) return 'error: ' + errors.join('\\n').slice(-3000);
    return prompts.every(p => /^\\[\\d+\\]:$/.test(p));
}"""


def answer_dialog(page) -> None:
    """Answer an open Lab dialog as a person would: accept a kernel choice (the notebook's own
    kernel is preselected), dismiss anything else."""
    dialog = page.locator(".jp-Dialog").first
    title = dialog.locator(".jp-Dialog-header").inner_text().strip()
    button = ".jp-Dialog-button.jp-mod-accept" if "kernel" in title.lower() else \
        ".jp-Dialog-button.jp-mod-reject"
    dialog.locator(button).first.click()
    dialog.wait_for(state="detached")


def open_notebook(page, lab: Lab, name: str, workspace: str) -> None:
    """Open a notebook in Lab and wait until its kernel is started and idle, answering any
    dialog (such as a kernel choice) on the way."""
    page.goto(lab.notebook_url(name, workspace), wait_until="domcontentloaded")
    while page.wait_for_function(_KERNEL_STATE, timeout=KERNEL_TIMEOUT_MS,
                                 polling=250).json_value() == "dialog":
        answer_dialog(page)


def run_all_cells(page) -> None:
    """Run → Run All Cells from the menu bar, then wait until every code cell has run."""
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-content .lm-Menu-itemLabel",
                 has_text=re.compile(r"^Run All Cells$")).click()
    state = page.wait_for_function(_RUN_STATE, timeout=KERNEL_TIMEOUT_MS, polling=250).json_value()
    if state is not True:
        raise AssertionError(f"a cell raised while running all cells:\n{state}")


# Marks a plotly figure has drawn: SVG shapes of its traces (bars, lines, heatmap images)
# plus painted pixels of its WebGL layer (scattergl), so an empty or blank figure counts 0.
_DRAWN_MARKS = """figure => {
    let marks = [...figure.querySelectorAll('.cartesianlayer .trace path, .cartesianlayer .hm image')]
        .filter(e => (e.getAttribute('d') || e.getAttribute('href') || '').length > 2).length;
    for (const canvas of figure.querySelectorAll('canvas.gl-canvas-context')) {
        const copy = document.createElement('canvas');
        copy.width = canvas.width; copy.height = canvas.height;
        const context = copy.getContext('2d');
        context.drawImage(canvas, 0, 0);
        const pixels = context.getImageData(0, 0, copy.width, copy.height).data;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) marks++;
    }
    return marks;
}"""


def drawn_marks(figure) -> int:
    """How much a rendered plotly figure (a `.js-plotly-plot` locator) has drawn."""
    return figure.evaluate(_DRAWN_MARKS)


# ---------------------------------------------------------------- screenshots on failure

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so a fixture can tell the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def failed(item) -> bool:
    reports = item.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


def save_screenshot(page, name: str) -> Path:
    """A full-page screenshot of `page` in `test-artifacts/<name>.png`."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
