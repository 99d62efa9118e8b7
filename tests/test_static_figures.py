"""Static figures: a PNG beside every plotly figure from one long-lived browser, and one clear
data note (the run going on) when no browser is found."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

from anam_notebooks.reports.execute import run_notebook
from anam_notebooks.views.figures import OfflineRenderer
from anam_notebooks.views.findings import NOTE_MIME
from anam_notebooks.views.static import StaticFigureWarning, StaticImages, find_browser, static_figures_requested

FIGURE = go.Figure(go.Bar(x=["a", "b", "c"], y=[3, 1, 2]), layout={"height": 300}).to_dict()


def _ppid(pid: int) -> int:
    status = (Path("/proc") / str(pid) / "status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _browsers_of(pid: int) -> list[int]:
    """Main Chromium processes (not its renderers, zygotes or helpers) descending from `pid`
    (Chromium rewrites its command line, so it is read as one string)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"chromium" not in command.split(b" ")[0] or b"--type=" in command:
                continue
            chain = _ppid(int(entry.name))
            for _ in range(50):
                if chain in (pid, 0, 1):
                    break
                chain = _ppid(chain)
        except (OSError, StopIteration, ValueError):
            continue
        if chain == pid:
            found.append(int(entry.name))
    return found


def test_the_environment_variable_turns_static_figures_on(monkeypatch):
    monkeypatch.delenv("ANAM_STATIC_FIGURES", raising=False)
    assert static_figures_requested() is False and static_figures_requested(True) is True
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("ANAM_STATIC_FIGURES", value)
        assert static_figures_requested() is expected
    monkeypatch.setenv("ANAM_STATIC_FIGURES", "sometimes")
    with pytest.raises(ValueError, match="ANAM_STATIC_FIGURES='sometimes'"):
        static_figures_requested()


def test_without_a_browser_one_warning_says_how_to_get_one_and_figures_keep_their_html(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    renderer = OfflineRenderer(StaticImages())
    with pytest.warns(StaticFigureWarning) as caught:
        bundles = [renderer.to_mimebundle(FIGURE) for _ in range(3)]
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "apt-get install chromium" in str(caught[0].message)
    assert all("image/png" not in b and 'class="plotly-graph-div"' in b["text/html"] for b in bundles)


@pytest.mark.browser
def test_one_browser_draws_every_figure(tmp_path):
    from _chromium import chromium_path

    chromium_path()   # skips (or fails under CI) without Debian's chromium
    from PIL import Image, ImageStat

    images = StaticImages()
    renderer = OfflineRenderer(images)
    try:
        bundles = [renderer.to_mimebundle(FIGURE) for _ in range(3)]
        assert len(_browsers_of(os.getpid())) == 1
    finally:
        images.close()
    assert not _browsers_of(os.getpid())   # closed with the renderer's images
    for bundle in bundles:
        png = base64.b64decode(bundle["image/png"])
        image = Image.open(io.BytesIO(png))
        assert image.size == (1000, 300)   # the figure's height, the default width
        assert ImageStat.Stat(image.convert("L")).var[0] > 100
        assert bundle["image/png"] in bundle["text/html"]   # the twin holds it for script-free viewers


def _tiny_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import anam_notebooks as an\nimport plotly.graph_objects as go\n"
                                          "client = an.setup_notebook(announce=False)"),
                nbformat.v4.new_code_cell("go.Figure(go.Bar(x=[1, 2], y=[2, 1]))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.mark.notebook
def test_a_kernel_without_a_browser_gets_one_data_note_and_runs_on(tmp_path):
    notebook = _tiny_notebook(tmp_path / "tiny.ipynb")
    executed = run_notebook(notebook, tmp_path / "out.ipynb",
                            env={"ANAM_STATIC_FIGURES": "1", "BROWSER_PATH": "/nonexistent/chromium",
                                 "ANAM_API_KEY": None, "ANAM_API_URL": None})
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    notes = [o["data"][NOTE_MIME] for o in outputs if NOTE_MIME in o.get("data", {})]
    assert len(notes) == 1 and "apt-get install chromium" in str(notes[0]), notes
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 1 and "image/png" not in figures[0]["data"]


def test_find_browser_honours_browser_path_and_never_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "nothing"))
    assert find_browser() is None
