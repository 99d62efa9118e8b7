"""Debian's Chromium for browser tests: found on PATH, never downloaded.

On a developer's machine without it, browser tests skip with a clear message; under CI
(`CI=true`, where `.ci/run` installs it) a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from types import ModuleType

import pytest

# Flags for a sandboxed, offline machine: no sandbox as root, no background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = ("Debian's chromium is not installed: `make test` installs it with apt-get "
               "(apt-get install chromium)")
    if _under_ci():
        pytest.fail(message + "; CI never skips the browser tests")
    pytest.skip(message)


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def playwright_sync_api() -> ModuleType:
    """Playwright's sync API; a skip when it is not installed, except under CI, which never
    skips the browser tests (there an import error fails the module)."""
    if _under_ci():
        from playwright import sync_api

        return sync_api
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")


def launch(playwright, extra_args: Sequence[str] = ()):
    """A headless Chromium browser driven by Playwright (`extra_args` after CHROMIUM_ARGS)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=[*CHROMIUM_ARGS, *extra_args])
