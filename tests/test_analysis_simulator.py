"""rank_suspects on simulated fleets: planted incidents are found, quiet fleets stay quiet."""

from __future__ import annotations

import pandas as pd
import pytest

from anam_notebooks import analysis
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator.fleet import generate_fleet


@pytest.mark.parametrize("sessions", [3000, 20000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_pod_ranks_first_and_planted_replicaset_is_flagged(seed, sessions):
    fleet = generate_fleet(seed=seed, sessions=sessions)
    pod, replicaset = fleet.incidents
    ranked = analysis.rank_suspects(sessions_frame(fleet.sessions))
    top = ranked.iloc[0]
    assert (top["level"], top["unit"]) == ("engine_pod", pod.pod)
    assert top["q_value"] < 0.01 and top["flagged"]
    # The window where the excess concentrates overlaps the planted incident.
    assert top["window_start"] < pd.Timestamp(pod.end) and top["window_end"] > pd.Timestamp(pod.start)
    assert pod.pod in top["finding"] and "in region eu" in top["finding"]
    rs = ranked[(ranked["level"] == "engine_replicaset") & (ranked["unit"] == replicaset.replicaset)]
    assert rs["q_value"].iloc[0] < 0.05
    # The pod's own replicaset owes its excess to the pod, and says so.
    own = ranked[(ranked["level"] == "engine_replicaset") & (ranked["unit"] == pod.replicaset)]
    if len(own) and own["q_value"].iloc[0] < 0.05:
        assert own["explained_by"].iloc[0] == f"pod {pod.pod}"
    summary = analysis.summarize_suspects(ranked, q=0.05)
    assert summary.splitlines()[1].startswith(f"1. pod {pod.pod}")


def test_quiet_fleets_raise_no_suspect_in_at_least_95_percent_of_seeds():
    noisy = []
    for seed in range(40):
        fleet = generate_fleet(seed=seed, sessions=2000, incidents=False)
        ranked = analysis.rank_suspects(sessions_frame(fleet.sessions))
        if (ranked["q_value"] < 0.05).any():
            noisy.append(seed)
    assert len(noisy) <= 2, noisy
