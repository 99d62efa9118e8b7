"""Which exit statuses count as failures: the default rule and the forms `failures=` accepts."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd

FailureSpec = Collection[str] | Callable[[str], bool] | None


def _default_failure(status: str) -> bool:
    """`ERROR`, or any status whose name contains ERROR or FAIL, ignoring case."""
    upper = status.upper()
    return "ERROR" in upper or "FAIL" in upper


#: The default failure rule: ERROR and any status containing ERROR or FAIL (ENGINE_ERROR,
#: FAILED_TO_START, ...). Passing it as `failures=` is the same as passing None.
DEFAULT_FAILURES: Callable[[str], bool] = _default_failure


def failure_rule(failures: FailureSpec) -> Callable[[Any], bool]:
    if failures is None:
        return lambda status: _default_failure(str(status))
    if callable(failures):
        return lambda status: bool(failures(status))
    if isinstance(failures, str):
        return lambda status: status == failures
    if isinstance(failures, Collection):
        chosen = set(failures)
        return lambda status: status in chosen or str(status) in chosen
    raise TypeError(
        f"failures={failures!r} is not usable: pass None (the default rule), a collection of "
        "exit statuses such as {'ERROR', 'ENGINE_ERROR'}, or a function status -> bool"
    )


def is_failure(statuses: Sequence[Any] | pd.Series | pd.Index, failures: FailureSpec = None
               ) -> np.ndarray:
    """Boolean array: which exit statuses count as failures. Missing statuses never do.

    Parameters
    ----------
    statuses : sequence, pandas.Series or pandas.Index
        Exit statuses (an open set: unknown values are judged by the rule like any other).
    failures : collection of str, callable or None
        None for the default rule (`DEFAULT_FAILURES`: ERROR and any status containing ERROR
        or FAIL), a collection of exact statuses, or a function ``status -> bool``.

    Returns
    -------
    numpy.ndarray
        One bool per status.

    Raises
    ------
    TypeError
        `failures` is none of the accepted forms.

    `failures` is None (the default rule, `DEFAULT_FAILURES`), a collection of exact statuses,
    or a function called once per distinct status.
    """
    rule = failure_rule(failures)
    codes, uniques = pd.factorize(pd.Series(statuses, dtype=object) if not isinstance(
        statuses, (pd.Series, pd.Index)) else statuses, use_na_sentinel=True)
    flags = np.array([rule(u) for u in uniques], dtype=bool)
    out = np.zeros(len(codes), dtype=bool)
    known = codes >= 0
    out[known] = flags[codes[known]]
    return out
