"""The runbooks answer "engine, provider or client?" first: notebooks 02 and 04 executed by
papermill against the demo fleet served by the simulator on a real loopback server."""

from __future__ import annotations

from pathlib import Path

import pytest

from anam_notebooks.reports.execute import run_notebook
from anam_notebooks.reports.report import simulator_environment
from anam_notebooks.simulator import DEMO_FLEET, generate_fleet
from anam_notebooks.views.findings import FINDINGS_MIME

pytestmark = pytest.mark.notebook

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.fixture(scope="module")
def demo():
    return generate_fleet(**DEMO_FLEET)


@pytest.fixture(scope="module")
def executed(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("runbooks")
    with simulator_environment(demo) as (env, _):
        return {name: run_notebook(NOTEBOOKS / f"{name}.ipynb", out / f"{name}.ipynb", env=env)
                for name in ("02_engine_hosts", "04_whats_different")}


def printed(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def published(nb) -> dict:
    """The first findings value the notebook published (what the report's callout opens with)."""
    return next(o["data"][FINDINGS_MIME] for c in nb.cells for o in c.get("outputs", [])
                if FINDINGS_MIME in o.get("data", {}))


@pytest.mark.parametrize("name", ["02_engine_hosts", "04_whats_different"])
def test_first_finding_names_the_engine_provider_and_client_causes(executed, demo, name):
    first = published(executed[name])["headline"]
    assert first.startswith("Engine, provider or client?")
    for incident in demo.incidents:
        assert incident.value in first, (incident.kind, first)
    assert "the engine (" in first.lower() and "a provider (tts_provider CARTESIA)" in first
    assert "a client (sdk_version @anam-ai/js-sdk@3.6.0)" in first


def test_whats_different_compares_failing_and_healthy_sessions_in_the_window(executed, demo):
    nb = executed["04_whats_different"]
    text = printed(nb)
    assert "Window of the top headline:" in text and "failing and" in text
    tables = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
              if o.get("output_type") == "execute_result" and "text/html" in o.get("data", {})]
    assert tables and "failing_share" in tables[0] and "difference" in tables[0]
    pod = next(i for i in demo.incidents if i.kind == "pod")
    assert pod.value in tables[0]   # the window is the pod's: its name leads the differences


def test_the_report_callout_opens_with_that_answer(executed):
    from anam_notebooks.reports.render import render_html

    html = render_html(executed["02_engine_hosts"], title="Engine hosts")
    callout = html[html.index('class="anam-findings'):]
    lead = callout[callout.index('class="anam-headline"'):callout.index("</p>")]
    assert "Engine, provider or client?" in lead and "a provider (tts_provider CARTESIA)" in lead
    assert callout.index('class="anam-headline"') < callout.index("<ol>")  # before the findings list
