"""Notebooks 02-04 over a session dataset (`-p dataset DIR`): the same findings as the frame path
on the same fleet, and not one list request for sessions (the data comes from the files)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import anam_notebooks as an
from anam_notebooks import analysis, read_findings
from anam_notebooks.api.config import API_KEY_ENV, API_URL_ENV
from anam_notebooks.data.store import CACHE_DIR_ENV
from anam_notebooks.reports.execute import run_notebook
from anam_notebooks.simulator import Fleet, create_app, running_server

pytestmark = pytest.mark.notebook

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
KEY = "test-dataset-notebooks-key"
FLEET_END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)  # the shared fleet's end (conftest)
WINDOW = {"since": "2026-04-14T00:00:00Z", "until": FLEET_END.isoformat()}  # most of the fleet's week


class Runs:
    """The executed notebooks, by (notebook stem, "frame" or "dataset"), and the requests each
    kind of run sent."""

    def __init__(self) -> None:
        self.notebooks: dict[tuple[str, str], object] = {}
        self.list_requests: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.store: Path = Path()


def _printed(nb, marker: str) -> str:
    """The text a code cell printed, for the first cell whose source holds `marker`."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


@pytest.fixture(scope="module")
def runs(fleet: Fleet, tmp_path_factory) -> Iterator[Runs]:
    """The planted fleet served on loopback, synced to a store; 02-04 run over the store, and 02
    and 04 run again over the API (the frame path) for comparison."""
    out = Runs()
    tmp = tmp_path_factory.mktemp("dataset-notebooks")
    app = create_app(fleet, api_key=KEY)
    stats = app.state.simulator.stats
    with running_server(app) as url:
        client = an.AnamClient(KEY, url)
        out.store = an.sync_sessions(client, cache=tmp / "store", progress=False).path.parent
        env = {API_URL_ENV: url, API_KEY_ENV: KEY, CACHE_DIR_ENV: str(tmp / "kernel-cache")}
        for kind, extra in (("dataset", {"dataset": str(out.store)}), ("frame", {"cache": False})):
            app.state.simulator.reset_stats()
            names = ["02_engine_hosts", "03_exit_statuses", "04_whats_different"]
            for stem in names if kind == "dataset" else ["02_engine_hosts", "04_whats_different"]:
                out.notebooks[stem, kind] = run_notebook(NOTEBOOKS / f"{stem}.ipynb", tmp / f"{stem}-{kind}.ipynb",
                                                         {**WINDOW, **extra}, env=env)
            out.list_requests[kind], out.requests[kind] = stats["list"], stats["total"]
    yield out


def test_a_dataset_run_sends_no_list_request(runs):
    assert runs.list_requests["dataset"] == 0
    assert runs.list_requests["frame"] > 0  # the frame path reads the list: the counter counts


@pytest.mark.parametrize("stem", ["02_engine_hosts", "03_exit_statuses", "04_whats_different"])
def test_a_dataset_run_finds_the_planted_incident_the_frame_path_finds(runs, stem):
    frame_findings = read_findings(runs.notebooks["02_engine_hosts", "frame"])
    found = read_findings(runs.notebooks[stem, "dataset"])
    assert frame_findings, "the planted incident is found on the frame path"
    assert [(f["level"], f["unit"]) for f in found] == [(f["level"], f["unit"]) for f in frame_findings]
    assert found == frame_findings  # the same q-values, windows and counts


@pytest.mark.parametrize("stem", ["02_engine_hosts", "04_whats_different"])
def test_a_dataset_run_reports_the_same_window_as_the_frame_path(runs, stem):
    marker = "an.session_source("
    assert _printed(runs.notebooks[stem, "dataset"], marker) == _printed(runs.notebooks[stem, "frame"], marker)
    assert " sessions" in _printed(runs.notebooks[stem, "dataset"], marker)
    assert "3,000 sessions" not in _printed(runs.notebooks[stem, "dataset"], marker)  # the window, not the store
    if stem == "04_whats_different":
        marker = "analysis.what_differs("
        dataset, frame = (_printed(runs.notebooks[stem, kind], marker) for kind in ("dataset", "frame"))
        assert dataset == frame and "failing and" in dataset and "Window of the top headline" in dataset


def _html(nb, marker: str) -> str:
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)


def test_a_dataset_run_shows_the_same_exemplars_as_the_frame_path(runs):
    dataset, frame = (_html(runs.notebooks["02_engine_hosts", kind], "analysis.exemplars(")
                      for kind in ("dataset", "frame"))
    assert dataset == frame and "<table" in dataset


def test_the_slices_a_dataset_run_shows_are_bounded(runs):
    """Exemplars come from the dataset (the top finding's failures), and the explorer and
    timelines read at most `SHOWN_ROWS` sessions, whatever the store holds."""
    ds = an.session_source(dataset=runs.store, **WINDOW)
    assert len(analysis.sessions_shown(ds, limit=25)) == 25
    ranked = analysis.rank_suspects(ds)
    top = ranked[ranked["flagged"]].iloc[0]
    picked = analysis.exemplars(ds, top, n=4)
    assert 0 < len(picked) <= 4
    assert set(picked.index) <= set(ds.to_frame(where={top["level"]: top["unit"]}, columns=["exit_status"]).index)
    assert analysis.is_failure(picked["exit_status"]).all()
    # A fleet-wide finding: the sessions of its window, from the dataset as from its frame.
    frame = ds.to_frame()
    fleet = pd.Series({"level": "fleet", "unit": "fleet", "window_start": pd.Timestamp("2026-04-18T00:00Z"),
                       "window_end": pd.Timestamp("2026-04-18T06:00Z")})  # as a row of rank_suspects
    shown = analysis.sessions_shown(ds, fleet)
    assert 0 < len(shown) < len(frame)
    assert set(shown.index) == set(analysis.sessions_shown(frame, fleet).index)
    assert list(analysis.exemplars(ds, fleet).index) == list(analysis.exemplars(frame, fleet).index)


def test_a_dataset_with_redaction_is_refused_naming_why(runs):
    from anam_notebooks import RedactedClient

    masked = RedactedClient(an.AnamClient(KEY, "http://127.0.0.1:9"))  # refused before any request
    with pytest.raises(ValueError, match="redaction"):
        an.session_source(masked, runs.store, **WINDOW)
