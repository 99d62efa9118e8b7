"""A report as a PDF, for people who read reports in mail: the report's page printed by the
system's Chromium (headless, print-to-PDF), with figures as their static images and no scripts."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..views.static import NO_BROWSER, find_browser
from .render import render_html

PRINT_TIMEOUT = 180  # seconds for Chromium to print one report
# Headless and offline: no sandbox (fails as root in containers), no GPU, no background traffic.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
          "--disable-background-networking", "--disable-component-update", "--no-pdf-header-footer")


class PdfError(RuntimeError):
    """The PDF could not be written (no browser, or the browser failed)."""


def write_pdf(nb: Any, path: str | Path, **render_options: Any) -> Path:
    """Print an executed notebook's report to `path` as a PDF.

    Parameters
    ----------
    nb : NotebookNode or path
        The executed notebook (run with static figures on, so its figures carry images).
    path : path
        The PDF to write.
    **render_options
        As `render_html` takes them (title, facts, status...).

    Returns
    -------
    Path
        The PDF written.

    Raises
    ------
    PdfError
        When no Chromium or Chrome is found, or it fails or times out, naming what to do.
    """
    browser = find_browser()
    if browser is None:
        raise PdfError("cannot write a PDF: " + NO_BROWSER.split(": ", 1)[1])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="anam-print-") as folder:
        page = Path(folder) / "report.html"
        page.write_text(render_html(nb, printed=True, **render_options), encoding="utf-8")
        target = Path(folder) / "report.pdf"
        try:
            run = subprocess.run([browser, *_FLAGS, f"--user-data-dir={folder}/profile",
                                  f"--print-to-pdf={target}", page.as_uri()],
                                 capture_output=True, text=True, timeout=PRINT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PdfError(f"cannot write a PDF: {browser} failed ({type(exc).__name__}: {exc})") from None
        if not target.is_file() or target.stat().st_size == 0:
            detail = (run.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise PdfError(f"cannot write a PDF: {browser} exited {run.returncode} without one ({detail[0][:200]})")
        shutil.move(str(target), str(path))
    return path
