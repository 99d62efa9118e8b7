"""Progress for long work: a tqdm bar (a widget in Jupyter, a line on a terminal), quiet when
headless unless asked for."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

Progress = bool | str


def iterate_with_progress(records: Iterable[Any], show: bool) -> Iterable[Any]:
    """Wrap an iterator in a tqdm bar (a widget in Jupyter) when `show`."""
    if not show:
        return records
    from tqdm.auto import tqdm
    return tqdm(records, desc="Fetching sessions", unit=" sessions")


def show_progress(progress: Progress) -> bool:
    if progress == "always":
        return True
    if progress is True:
        return in_jupyter() or bool(getattr(sys.stderr, "isatty", lambda: False)())
    if progress is False or progress is None:
        return False
    raise ValueError(f"progress={progress!r} is not valid: expected True (Jupyter or terminal only), "
                     "'always' or False")


def in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    instance = get_ipython() if callable(get_ipython) else None
    return instance is not None and getattr(instance, "kernel", None) is not None
