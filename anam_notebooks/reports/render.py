"""Executed notebook → one self-contained HTML report (nbconvert, offline, plotly.js inlined once).

Kernels emit plotly figures as `application/vnd.plotly.v1+json`, which nbconvert cannot draw, and
plotly's `notebook` renderer inlines the whole plotly.js into the first figure's output. So before
exporting, every figure output becomes a plain `<div>` plus a call into one shared plotly.js that the
report template inlines in the page head; widget views (blank without a live kernel) are dropped in
favour of the static HTML our widgets put beside them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_TEMPLATE_DIR = Path(__file__).parent / "templates"
_PLOTLYJS_MARKERS = ("window.PlotlyConfig", "plotly.js v", "plotly-latest.min.js")


def _figure_html(figure: dict) -> str:
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config={"displaylogo": False, "responsive": True})


def _is_plotlyjs_loader(output: dict) -> bool:
    """An output that only exists to load plotly.js (plotly's `notebook` renderer start-up)."""
    text = output.get("data", {}).get("text/html", "")
    if isinstance(text, list):
        text = "".join(text)
    return PLOTLY_MIME not in output.get("data", {}) and any(m in text for m in _PLOTLYJS_MARKERS)


def _static_outputs(outputs: Iterable[dict]) -> tuple[list[dict], int]:
    """Outputs rewritten for a page with no kernel, and how many figures they hold."""
    kept: list[dict] = []
    figures = 0
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream" and output.get("name") == "stderr":
            continue  # progress bars and warnings: noise in a shared report
        if kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            if _is_plotlyjs_loader(output):
                continue
            if PLOTLY_MIME in data:
                output = copy.deepcopy(output)
                output["data"] = {"text/html": _figure_html(data[PLOTLY_MIME])}
                figures += 1
            elif WIDGET_MIME in data:
                rest = {k: v for k, v in data.items() if k not in (WIDGET_MIME, "text/plain")}
                if not rest:
                    continue  # a widget with no static rendering (e.g. a progress bar)
                output = copy.deepcopy(output)
                output["data"] = rest
        kept.append(output)
    return kept, figures


def prepare_notebook(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of `nb` whose outputs draw offline; returns it and the number of figures."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    figures = 0
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, n = _static_outputs(cell.get("outputs", []))
            cell.outputs = [nbformat.from_dict(o) for o in cell.outputs]
            figures += n
    return nb, figures


def render_html(nb: nbformat.NotebookNode | str | Path, *, title: str,
                facts: Iterable[tuple[str, str]] = (), keep_input: bool = False) -> str:
    """HTML of an executed notebook: header with `facts`, inputs hidden unless `keep_input`."""
    node = nb if isinstance(nb, nbformat.NotebookNode) else nbformat.read(str(nb), as_version=4)
    nb, figures = prepare_notebook(node)
    plotlyjs = ""
    if figures:
        from plotly.offline import get_plotlyjs

        plotlyjs = get_plotlyjs().replace("</script", "<\\/script")
    exporter = HTMLExporter(
        template_name="anam_report",
        extra_template_basedirs=[str(_TEMPLATE_DIR)],
        exclude_input=not keep_input,
        exclude_input_prompt=not keep_input,
        exclude_output_prompt=True,
        embed_images=True,
    )
    resources = {"anam_report": {"title": title, "facts": list(facts), "plotlyjs": plotlyjs},
                 "metadata": {"name": title}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def write_report(nb: nbformat.NotebookNode | str | Path, path: str | Path, **kwargs) -> Path:
    """Render `nb` with `render_html` and write it to `path` (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(nb, **kwargs), encoding="utf-8")
    return path

