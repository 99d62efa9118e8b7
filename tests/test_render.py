"""The report renderer on hand-built notebooks: data notes counted, findings lifted to the top,
contents for long reports, and every lifted value escaped (by views/html.py's `esc`)."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from anam_notebooks.reports.render import prepare_notebook, render_html
from anam_notebooks.views.findings import findings_bundle, note_bundle

PAYLOAD = '<img src=x onerror="window.__pwned=1">'


def _notebook(*outputs, headings: int = 2) -> nbformat.NotebookNode:
    cells = [new_markdown_cell(f"## Section {n}\n\ntext") for n in range(headings)]
    cells.append(new_code_cell("x", outputs=list(outputs)))
    return new_notebook(cells=cells)


def _warning(text: str):
    return new_output("stream", name="stderr", text=text)


def test_warnings_become_deduplicated_counted_notes_and_stderr_noise_goes():
    nb = _notebook(
        _warning("/x/fields.py:41: MalformedRecordWarning: sessions: startTime is not a time in 3 record(s)\n"
                 "  warnings.warn(\n"),
        _warning("/x/fields.py:41: MalformedRecordWarning: sessions: startTime is not a time in 3 record(s)\n"),
        _warning("Executing:  50%|#####     | 1/2\n"),
        new_output("display_data", data=note_bundle("log", "the session list kept changing: read 10")),
        new_output("display_data", data=note_bundle("log", "the session list kept changing: read 10")),
    )
    prepared = prepare_notebook(nb)
    assert dict(prepared.notes) == {"sessions: startTime is not a time in 3 record(s)": 2,
                                    "the session list kept changing: read 10": 2}
    assert prepared.notebook.cells[-1].outputs == []   # nothing raw left in the body
    html = render_html(nb, title="t")
    section = html[html.index('id="data-notes"'):]
    section = section[:section.index("</section>")]
    assert section.count("<li>") == 2 and "(×2)" in section
    assert "Executing:" not in html and "warnings.warn" not in html


def test_findings_are_lifted_to_the_top_and_escaped():
    finding = {"level": "engine_pod", "unit": PAYLOAD, "sentence": f"pod {PAYLOAD} failed 40 %"}
    nb = _notebook(new_output("display_data", data=findings_bundle([finding], q=0.01)))
    prepared = prepare_notebook(nb)
    assert prepared.findings == [finding] and prepared.q == 0.01
    html = render_html(nb, title=PAYLOAD, facts=[("Source", PAYLOAD)])
    assert PAYLOAD not in html
    top = html[html.index('class="anam-report-top"'):]
    assert top.index("1 finding stands out") < top.index('class="jp-Cell')
    assert re.search(r"pod &lt;img src=x onerror=(&quot;|\")window.__pwned=1(&quot;|\")&gt; failed 40 %", top)
    assert "<img" not in html


def test_a_quiet_notebook_says_so_at_the_top():
    nb = _notebook(new_output("display_data", data=findings_bundle([], q=0.01, quiet_text="All calm.")))
    html = render_html(nb, title="t")
    assert re.search(r'class="anam-findings anam-quiet".*All calm\.', html, flags=re.S)


def test_contents_only_for_a_long_report_linking_real_anchors():
    assert 'class="anam-toc"' not in render_html(_notebook(headings=2), title="t")
    html = render_html(_notebook(headings=6), title="t")
    links = re.findall(r'href="#(section-\d+)">Section \d<', html)
    assert len(links) == 6 and all(f'id="{a}"' in html for a in links)


def test_publish_findings_refuses_a_finding_without_the_schema_keys():
    import pytest

    from anam_notebooks import publish_findings

    with pytest.raises(ValueError, match=r"finding 0 lacks \['counts', 'rates'"):
        publish_findings([{"level": "engine_pod", "unit": "p", "window": {}, "q_value": 0.1,
                           "sentence": "s"}])


@pytest.mark.notebook
def test_warnings_raised_in_a_kernel_become_notes_each_time_even_from_a_thread(tmp_path):
    """After `setup_notebook`, every data-quality warning and warning log line (the paging code
    logs from its background thread) is an output a report counts, not stderr printed once."""
    import pytest

    pytest.importorskip("papermill")
    from nbformat.v4 import new_code_cell, new_notebook

    from anam_notebooks.reports.execute import run_notebook
    from anam_notebooks.reports.render import report_notes

    nb = new_notebook(cells=[
        new_code_cell("import anam_notebooks as an\nclient = an.setup_notebook(announce=False)"),
        new_code_cell("import logging, threading\n"
                      "log = lambda: logging.getLogger('anam_notebooks').warning('the list kept changing')\n"
                      "t = threading.Thread(target=log); t.start(); t.join(); log()"),
        new_code_cell("import warnings\nfrom anam_notebooks.data.fields import MalformedRecordWarning\n"
                      "for _ in range(3):\n    warnings.warn('startTime is not a time', MalformedRecordWarning)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    source = tmp_path / "notes.ipynb"
    nbformat.write(nb, str(source))
    executed = run_notebook(source, tmp_path / "out.ipynb", env={"ANAM_API_KEY": None})
    assert report_notes(executed) == {"the list kept changing": 2, "startTime is not a time": 3}
    assert not [o for c in executed.cells for o in c.outputs if o.get("name") == "stderr"]
