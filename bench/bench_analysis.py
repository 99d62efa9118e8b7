"""How long the diagnosis takes on a simulated fleet, against a plain group-by in the same run."""

from __future__ import annotations

import time

from anam_notebooks import analysis
from anam_notebooks.demo.fleet import generate_fleet
from anam_notebooks.frames import sessions_frame


def _seconds(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    for sessions in (3000, 20000):
        df = sessions_frame(generate_fleet(seed=0, sessions=sessions).sessions)
        baseline = _seconds(lambda: analysis.failure_rates(df, by="engine_pod"))
        ranked = _seconds(lambda: analysis.rank_suspects(df))
        shift = _seconds(lambda: analysis.exit_status_shift(df, df["start_time"].median()))
        print(f"{sessions:>6} sessions: failure_rates {baseline * 1000:7.1f} ms | "
              f"rank_suspects {ranked * 1000:7.1f} ms ({ranked / baseline:5.0f}x) | "
              f"exit_status_shift {shift * 1000:6.1f} ms ({shift / baseline:4.0f}x)")


if __name__ == "__main__":
    main()
