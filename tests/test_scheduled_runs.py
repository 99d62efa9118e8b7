"""Scheduled runs: the notebooks' `cache` parameter, what it resolves to, and what a second
headless run costs against the simulator (requests counted by the simulator itself)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import anam_notebooks as an
from anam_notebooks.reports.execute import run_notebook
from anam_notebooks.simulator import create_app, demo_client, generate_fleet, running_server
from anam_notebooks.views.masking import RedactedClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


def test_every_notebook_takes_a_cache_parameter_and_passes_it_to_each_fetch():
    import nbformat
    import papermill as pm

    for path in NOTEBOOKS:
        assert pm.inspect_notebook(str(path))["cache"]["default"] == "None", path.name
        code = "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
        assert "cache = an.notebook_cache(cache, client)" in code, path.name
        fetches = (code.count("an.fetch_sessions(") + code.count("an.session_source(")
                   + code.count("an.fetch_transcripts("))
        assert fetches and code.count("cache=cache") == fetches, path.name


def test_the_cache_parameter_means_the_user_cache_when_headless(monkeypatch, tmp_path):
    monkeypatch.setenv("ANAM_NOTEBOOKS_CACHE", str(tmp_path / "mine"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert an.notebook_cache(None) == tmp_path / "mine"
    assert an.notebook_cache(True) == tmp_path / "mine"
    assert an.notebook_cache(False) is False
    assert an.notebook_cache(str(tmp_path / "there")) == tmp_path / "there"
    monkeypatch.delenv("ANAM_API_KEY", raising=False)
    simulated = an.connect(sessions=50)   # no key: the built-in simulator, fresh on every run
    assert an.notebook_cache(None, simulated) is False
    assert an.notebook_cache(str(tmp_path / "there"), simulated) == tmp_path / "there"
    monkeypatch.setenv("JPY_SESSION_NAME", "02_engine_hosts.ipynb")   # a kernel JupyterLab started
    assert an.notebook_cache(None) is False
    assert an.notebook_cache(str(tmp_path / "there")) == tmp_path / "there"
    for bad in ("", 3, 1.5):
        with pytest.raises(ValueError, match="cache="):
            an.notebook_cache(bad)


def test_a_redacted_notebook_reads_through_the_cache_like_any_other(monkeypatch, tmp_path):
    """The cache holds raw records and masking happens after it (tests/test_redaction.py)."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    client = RedactedClient(demo_client(sessions=40, end=END))
    assert an.notebook_cache(str(tmp_path), client) == tmp_path
    assert an.notebook_cache(None, client) == an.notebook_cache(None)


def test_fleets_that_differ_in_any_setting_never_share_a_cache_key():
    """The store is keyed by base URL and organisation; every in-process simulator has the same
    URL and loopback ports are reused, so the organisation carries the fleet's identity."""
    def org(**kw):
        settings = {"seed": 0, "sessions": 60, "span": "24h", "end": END, **kw}
        return generate_fleet(**settings).sessions[0]["organizationId"]

    base = org()
    assert org() == base
    variants = [org(seed=1), org(sessions=61), org(span="2d"), org(end=datetime(2026, 4, 20, 13, tzinfo=UTC)),
                org(incidents=False), org(incidents={"pod"})]
    assert len({base, *variants}) == 1 + len(variants)


def test_two_fleets_at_one_url_read_through_one_cache_folder_stay_apart(tmp_path):
    first = demo_client(sessions=300, span="24h", end=END)
    second = demo_client(sessions=300, span="24h", end=datetime(2026, 4, 20, 18, tzinfo=UTC))
    assert first.base_url == second.base_url
    a = an.fetch_sessions(first, since="2026-04-19T12:00Z", until=END, cache=tmp_path, progress=False)
    b = an.fetch_sessions(second, since="2026-04-19T12:00Z", until=END, cache=tmp_path, progress=False)
    fresh = an.fetch_sessions(second, since="2026-04-19T12:00Z", until=END, progress=False)
    assert b.index.equals(fresh.index) and not a.index.equals(b.index)
    assert b["start_time"].equals(fresh["start_time"])


@pytest.mark.notebook
@pytest.mark.slow
def test_a_second_scheduled_run_of_02_only_refreshes_the_cache(tmp_path):
    """Two consecutive headless runs of 02_engine_hosts over a 20,000-session window with the
    cache: the second sends at most 60 requests and publishes the same findings."""
    app = create_app(generate_fleet(seed=3, sessions=20_000, span="24h", end=END), api_key="sched-key")
    stats = app.state.simulator.stats
    notebook = ROOT / "notebooks" / "02_engine_hosts.ipynb"
    parameters = {"since": "2026-04-19T12:00:00Z", "until": "2026-04-20T12:00:00Z", "cache": str(tmp_path / "cache")}
    with running_server(app) as url:
        env = {"ANAM_API_URL": url, "ANAM_API_KEY": "sched-key"}
        first = run_notebook(notebook, tmp_path / "first.ipynb", parameters, env=env)
        first_requests = stats["total"]
        second = run_notebook(notebook, tmp_path / "second.ipynb", parameters, env=env)
        second_requests = stats["total"] - first_requests
    assert first_requests >= 200          # 20,000 sessions at 100 a page
    assert second_requests <= 60, second_requests
    assert an.read_findings(second) == an.read_findings(first)
    assert an.read_findings(first)
    assert any((tmp_path / "cache").glob("sessions-*/start_date=*/part-*.parquet"))
