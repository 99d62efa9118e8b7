"""Benchmarks: each `bench_<topic>.py` has a `main()` printing figures against an in-run baseline."""

import time
from collections.abc import Callable
from typing import Any


def best_of(runs: int, func: Callable[[], Any]) -> float:
    """The fastest of `runs` timed calls of `func`, in seconds (the least disturbed by noise)."""
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - began)
    return best
