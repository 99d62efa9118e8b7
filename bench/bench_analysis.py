"""How long the diagnosis takes on a simulated fleet, against a plain group-by in the same run."""

from __future__ import annotations

from functools import partial

from anam_notebooks import analysis
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator.fleet import generate_fleet

from . import best_of


def main() -> None:
    for sessions in (3000, 20000):
        df = sessions_frame(generate_fleet(seed=0, sessions=sessions).sessions)
        baseline = best_of(3, partial(analysis.failure_rates, df, by="engine_pod"))
        ranked = best_of(3, partial(analysis.rank_suspects, df))
        shift = best_of(3, partial(analysis.exit_status_shift, df, df["start_time"].median()))
        print(f"{sessions:>6} sessions: failure_rates {baseline * 1000:7.1f} ms | "
              f"rank_suspects {ranked * 1000:7.1f} ms ({ranked / baseline:5.0f}x) | "
              f"exit_status_shift {shift * 1000:6.1f} ms ({shift / baseline:4.0f}x)")


if __name__ == "__main__":
    main()
