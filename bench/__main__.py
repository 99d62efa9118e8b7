"""Run every `bench_*.py` module's `main()` (or only those named: `python -m bench simulator`)."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def discover(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if not names:
        return found
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in names]
    unknown = sorted(set(wanted) - set(found))
    if unknown:
        sys.exit(f"no benchmark named {unknown}; available: {', '.join(found)}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    modules = discover(sys.argv[1:] if argv is None else argv)
    for name in modules:
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"{__package__}.{name}").main()
        print(f"({name} took {time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
