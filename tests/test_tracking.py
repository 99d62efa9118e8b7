"""New, ongoing, resolved: `compare_findings`, and `report --baseline` with
`--fail-on-new-findings` on real runs of 02_engine_hosts against planted fleets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from test_reports import FINDING, FINDINGS_FILE

import anam_notebooks as an
from anam_notebooks.reports.report import simulator_environment
from anam_notebooks.simulator import generate_fleet

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
NOTEBOOK = ROOT / "notebooks" / "02_engine_hosts.ipynb"
END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
KEY = "sk-anam-tracking-test-key"


def finding(unit: str, start: str | None, end: str | None, level: str = "engine_pod") -> dict:
    return {"level": level, "unit": unit, "window": {"start": start, "end": end},
            "sentence": f"{level} {unit} failed more than the rest."}


def test_same_unit_with_overlapping_or_adjacent_windows_is_ongoing():
    before = [finding("pod-a", "2026-04-20T01:00:00Z", "2026-04-20T04:00:00Z")]
    grown = [finding("pod-a", "2026-04-20T01:00:00Z", "2026-04-20T05:00:00Z")]
    adjacent = [finding("pod-a", "2026-04-20T05:00:00Z", "2026-04-20T07:00:00Z")]
    later = [finding("pod-a", "2026-04-20T06:00:00Z", "2026-04-20T07:00:00Z")]
    assert [f["status"] for f in an.compare_findings(before, grown)] == ["ongoing"]
    assert [f["status"] for f in an.compare_findings(before, adjacent)] == ["ongoing"]
    # Two hours apart: a new incident on the same pod, and the old one is over.
    assert [f["status"] for f in an.compare_findings(before, later)] == ["new", "resolved"]
    assert [f["status"] for f in an.compare_findings(before, later, gap="3h")] == ["ongoing"]


def test_a_unit_failing_all_period_is_ongoing_wherever_its_worst_window_moves():
    """An SDK release failing every hour it runs: its window is only its worst stretch, which
    moves when another cause joins the fleet; it is the same cause, not new plus resolved."""
    before = [{**finding("sdk-a", "2026-04-20T11:00:00Z", "2026-04-20T12:00:00Z", "sdk_version"),
               "scope": "period"}]
    moved = [{**finding("sdk-a", "2026-04-19T23:00:00Z", "2026-04-20T02:00:00Z", "sdk_version"),
              "scope": "period"}]
    assert [f["status"] for f in an.compare_findings(before, moved)] == ["ongoing"]
    # A window finding (an outage) that moves that far is another incident of the same unit.
    short = [{**f, "scope": "window"} for f in before]
    later = [{**f, "scope": "window"} for f in moved]
    assert sorted(f["status"] for f in an.compare_findings(short, later)) == ["new", "resolved"]


def test_another_unit_or_level_is_a_new_cause_and_a_missing_one_resolved():
    before = [finding("pod-a", "2026-04-20T01:00:00Z", "2026-04-20T04:00:00Z"),
              finding("v5.1.1", None, None, level="engine_version")]
    now = [finding("pod-b", "2026-04-20T01:00:00Z", "2026-04-20T04:00:00Z"),
           finding("v5.1.1", None, None, level="engine_version"),
           finding("pod-a", "2026-04-20T01:00:00Z", "2026-04-20T04:00:00Z", level="engine_replicaset")]
    marked = an.compare_findings({"findings": before}, {"findings": now})
    assert [(f["unit"], f["level"], f["status"]) for f in marked] == [
        ("pod-b", "engine_pod", "new"), ("v5.1.1", "engine_version", "ongoing"),
        ("pod-a", "engine_replicaset", "new"), ("pod-a", "engine_pod", "resolved")]
    assert all("status" not in f for f in before + now)   # copies, inputs untouched
    assert [f["status"] for f in an.compare_findings(None, now)] == ["new"] * 3
    assert an.compare_findings(before, []) == [{**f, "status": "resolved"} for f in before]


def test_bad_input_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"current\[0\] is not a finding"):
        an.compare_findings([], [{"unit": "x"}])
    with pytest.raises(ValueError, match="findings document"):
        an.compare_findings({"notebook": "02"}, [])
    with pytest.raises(ValueError, match="gap="):
        an.compare_findings([], [], gap="soon")


def _report(env: dict[str, str], out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anam_notebooks", "report", str(NOTEBOOK), "-o", str(out),
                           "-p", "since", "2026-04-19T12:00:00Z", "-p", "until", "2026-04-20T12:00:00Z", *extra],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


def _run(fleet, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    with simulator_environment(fleet, api_key=KEY) as (env, _):
        result = _report(env, out, *extra)
    assert result.returncode in (0, 3), result.stderr[-3000:]
    return result, json.loads((out / "02_engine_hosts.findings.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A fleet with one planted cause (a client SDK regression) run once, the baseline; then,
    each with --baseline and --fail-on-new-findings: the same fleet, the fleet with one more
    planted cause (a TTS provider outage), and the fleet without the first cause."""
    def fleet(incidents):
        return generate_fleet(seed=5, sessions=3000, span="24h", end=END, incidents=incidents)

    first = tmp_path_factory.mktemp("first")
    _, before = _run(fleet({"client"}), first)
    assert "@anam-ai/js-sdk@3.6.0" in {f["unit"] for f in before["findings"]}, before["findings"]
    baseline = first / "02_engine_hosts.findings.json"
    made = {"baseline": (baseline, before)}
    for name, incidents in (("same", {"client"}), ("more", {"client", "provider"}), ("without", False)):
        out = tmp_path_factory.mktemp(name)
        result, document = _run(fleet(incidents), out, "--baseline", str(baseline), "--fail-on-new-findings")
        made[name] = (result, document, out / "02_engine_hosts.html")
    return made


@pytest.mark.notebook
@pytest.mark.slow
def test_the_same_fleet_again_is_all_ongoing_and_exits_0(runs):
    _, before = runs["baseline"]
    result, document, html_path = runs["same"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert document["findings"] and {f["status"] for f in document["findings"]} == {"ongoing"}
    assert document["resolved"] == [] and document["baseline"]["generated_at"] == before["generated_at"]
    for run in ("same", "more", "without"):
        jsonschema.validate(runs[run][1], FINDINGS_FILE)
        for resolved in runs[run][1]["resolved"]:
            jsonschema.validate(resolved, FINDING)
    html = html_path.read_text(encoding="utf-8")
    top = html[html.index('class="anam-report-top"'):]
    assert top.index("Since the previous run") < top.index('class="anam-findings"')
    assert f"0 new, {len(document['findings'])} ongoing, 0 resolved" in top
    assert "since the previous run 0 new" in result.stderr


@pytest.mark.notebook
@pytest.mark.slow
def test_one_more_planted_cause_is_new_and_exits_3(runs):
    result, document, _ = runs["more"]
    assert result.returncode == 3, result.stderr[-2000:]
    status = {f["unit"]: f["status"] for f in document["findings"]}
    assert status["@anam-ai/js-sdk@3.6.0"] == "ongoing"
    assert status["CARTESIA"] == "new", status


def test_exit_codes_new_findings_page_only_with_fail_on_new_findings(tmp_path, capsys):
    """The CLI's exit code from the reports alone: 3 only for a new finding with
    --fail-on-new-findings; --fail-on-findings as before; a failed notebook is still 1."""
    from anam_notebooks.cli import _print_reports
    from anam_notebooks.reports.report import Report

    old = finding("pod-a", "2026-04-20T01:00:00Z", "2026-04-20T04:00:00Z")
    fresh = finding("pod-b", "2026-04-20T01:00:00Z", "2026-04-20T04:00:00Z")

    def report(found, compared=None, error=None):
        return Report(NOTEBOOK, tmp_path / "x.ipynb", tmp_path / "x.html", error, None, tuple(found),
                      "x", None, None if compared is None else tuple(compared))

    ongoing = report([old], an.compare_findings([old], [old]))
    new = report([old, fresh], an.compare_findings([old], [old, fresh]))
    assert _print_reports([ongoing], fail_on_new_findings=True) == 0
    assert _print_reports([new], fail_on_new_findings=True) == 3
    assert _print_reports([new]) == 0
    assert _print_reports([ongoing], fail_on_findings=True) == 3
    assert _print_reports([report([fresh])], fail_on_new_findings=True) == 3   # no baseline: all new
    assert _print_reports([report([], error="02 failed in cell [3]")], fail_on_new_findings=True) == 1
    assert "since the previous run 1 new, 1 ongoing, 0 resolved" in capsys.readouterr().err


@pytest.mark.notebook
@pytest.mark.slow
def test_a_fleet_without_the_first_cause_marks_it_resolved(runs):
    _, document, html_path = runs["without"]
    resolved = {f["unit"]: f["status"] for f in document["resolved"]}
    assert resolved.get("@anam-ai/js-sdk@3.6.0") == "resolved", document["resolved"]
    assert "@anam-ai/js-sdk@3.6.0" not in {f["unit"] for f in document["findings"]}
    assert "RESOLVED" in html_path.read_text(encoding="utf-8")


@pytest.mark.browser
def test_the_status_box_reads_at_1400_px(runs):
    """The report with a new and an ongoing finding, in Chromium at 1400 px: the box is at the
    top, its badges readable; the screenshot goes to test-artifacts/ for a reviewer."""
    from _chromium import launch, playwright_sync_api

    sync_api = playwright_sync_api()
    _, _, html_path = runs["more"]
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(html_path.as_uri(), wait_until="load")
            box = page.locator("section.anam-status")
            assert box.is_visible() and box.bounding_box()["y"] < 400
            badges = box.locator(".anam-badge").all_inner_texts()
            assert "NEW" in badges and "ONGOING" in badges
            for badge in box.locator(".anam-badge").all():
                width = badge.evaluate("b => [b.scrollWidth, b.clientWidth]")
                assert width[0] <= width[1], width
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report-baseline-02_engine_hosts.png"))
        finally:
            browser.close()


def test_a_baseline_of_another_notebook_or_not_a_findings_file_is_a_usage_error(tmp_path):
    other = tmp_path / "other.findings.json"
    other.write_text(json.dumps({"schema": "anam-notebooks/findings", "notebook": "03_exit_statuses",
                                 "findings": []}), encoding="utf-8")
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]", encoding="utf-8")
    for path, message in ((other, "03_exit_statuses"), (junk, "not a findings file")):
        result = subprocess.run([sys.executable, "-m", "anam_notebooks", "report", str(NOTEBOOK),
                                 "--baseline", str(path), "-o", str(tmp_path / "out")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-1000:]
