"""Static figures for places where scripts do not run (GitHub's notebook viewer, mail, PDF, most
wikis): a PNG of every plotly figure, drawn by kaleido in the system's Chromium.

One browser serves a whole notebook: it starts with the first figure (a few seconds) and each
further figure takes a fraction of a second, where starting a browser per figure costs about two
seconds each. It runs on a background event loop of its own and closes when the process exits.
When no Chromium or Chrome is found, one warning (a data note in a notebook) says how to get one
and figures keep only their interactive forms.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import warnings
from typing import Any

from ..api.runner import LoopThread

#: Set to 1 (or true/yes) to give every figure a PNG, e.g. for a plain `papermill` run.
STATIC_FIGURES_ENV = "ANAM_STATIC_FIGURES"
#: Looked for on PATH, in order (Debian's package first); BROWSER_PATH overrides them.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DEFAULT_WIDTH = 1000    # px of a figure that sets no width (a report's text column)
DEFAULT_HEIGHT = 500
RENDER_TIMEOUT = 60.0   # seconds for one figure before giving up on images for the notebook
NO_BROWSER = ("static figures: no Chromium or Chrome was found, so figures carry no PNG image (they "
              "still draw wherever scripts run). Install one (Debian/Ubuntu: `apt-get install "
              "chromium`; macOS: `brew install --cask chromium`) or set BROWSER_PATH to a Chrome "
              "or Chromium executable, then run the notebook again.")


class StaticFigureWarning(UserWarning):
    """Figures could not be given a PNG image (no browser, or the browser failed)."""


def static_figures_requested(value: bool = False) -> bool:
    """Whether figures get PNG images: when `value` is true or ``ANAM_STATIC_FIGURES`` is 1.

    Parameters
    ----------
    value : bool
        The `static_figures=` argument of `setup_notebook`.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        When the environment variable holds something other than 1/0, true/false, yes/no.
    """
    if value:
        return True
    raw = os.environ.get(STATIC_FIGURES_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{STATIC_FIGURES_ENV}={raw!r} is not valid: expected 1 or 0 (true/false, yes/no)")


def find_browser() -> str | None:
    """The Chromium or Chrome to draw with: ``BROWSER_PATH``, else the first of `BROWSER_NAMES`
    on PATH (never a downloaded browser build)."""
    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    return next((path for path in map(shutil.which, BROWSER_NAMES) if path), None)


class StaticImages:
    """PNG images of plotly figures from one long-lived kaleido browser.

    `png(figure)` returns the image's bytes, or None once images are unavailable (no browser,
    or the browser failed): that is said once, as a `StaticFigureWarning`, and later figures
    are not tried again.
    """

    def __init__(self) -> None:
        self._kaleido: Any = None
        self._loop: LoopThread | None = None
        self._failed = False

    @property
    def available(self) -> bool:
        """False once images were found to be unavailable."""
        return not self._failed

    def _give_up(self, message: str) -> None:
        self._failed = True
        self.close()
        warnings.warn(message, StaticFigureWarning, stacklevel=4)

    def _start(self) -> bool:
        if self._kaleido is not None:
            return True
        path = find_browser()
        if path is None:
            self._give_up(NO_BROWSER)
            return False
        import kaleido

        loop = LoopThread()
        browser = kaleido.Kaleido(n=1, timeout=RENDER_TIMEOUT, mathjax=False, path=path)
        try:
            loop.run(asyncio.wait_for(browser.open(), RENDER_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - any failure to start means no images, said once
            self._give_up(f"static figures: the browser at {path!r} did not start "
                          f"({type(exc).__name__}: {exc}); figures carry no PNG image")
            return False
        self._kaleido, self._loop = browser, loop
        atexit.register(self.close)
        return True

    def png(self, figure: dict[str, Any]) -> bytes | None:
        """The figure (a plotly figure dict) as PNG bytes at its own size (1000 × 500 px when it
        sets none), or None when images are unavailable."""
        if self._failed or not self._start():
            return None
        layout = figure.get("layout") or {}
        opts = {"format": "png", "width": layout.get("width") or DEFAULT_WIDTH,
                "height": layout.get("height") or DEFAULT_HEIGHT, "scale": 1}
        assert self._loop is not None
        try:
            data = self._loop.run(asyncio.wait_for(self._kaleido.calc_fig(figure, opts=opts), RENDER_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - a failed image must never break the notebook
            self._give_up(f"static figures: a figure could not be drawn ({type(exc).__name__}: {exc}); "
                          "this and later figures carry no PNG image")
            return None
        return bytes(data)

    def close(self) -> None:
        """Close the browser (idempotent; also run at exit)."""
        browser, loop = self._kaleido, self._loop
        self._kaleido = self._loop = None
        if browser is not None and loop is not None:
            try:
                loop.run(asyncio.wait_for(browser.close(), 10))
            except Exception:  # noqa: BLE001, S110 - closing at exit is best effort
                pass
