"""How long the diagnosis takes: rank_suspects over every attribute against the engine-only
ranking and a plain group-by, on the same frame in the same run."""

from __future__ import annotations

from functools import partial

from anam_notebooks import analysis
from anam_notebooks.analysis.suspects import ENGINE_LEVELS
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator.fleet import generate_fleet

from . import best_of


def main() -> None:
    for sessions, runs in ((20_000, 3), (1_000_000, 1)):
        df = sessions_frame(generate_fleet(seed=0, sessions=sessions).sessions)
        baseline = best_of(runs, partial(analysis.failure_rates, df, by="engine_pod"))
        engine = best_of(runs, partial(analysis.rank_suspects, df, levels=ENGINE_LEVELS))
        every = best_of(runs, partial(analysis.rank_suspects, df))
        print(f"{sessions:>9,} sessions: failure_rates {baseline * 1000:8.1f} ms | "
              f"rank_suspects engine-only {engine:6.2f} s | all {len(analysis.DEFAULT_LEVELS)} "
              f"attributes {every:6.2f} s ({every / engine:4.1f}x engine-only)")


if __name__ == "__main__":
    main()
