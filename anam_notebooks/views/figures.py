"""Figures that draw everywhere: the plotly mimetype for JupyterLab plus an offline HTML twin.

JupyterLab draws `application/vnd.plotly.v1+json` with plotly's extension, but `jupyter nbconvert
--to html`, an "Export as HTML" or a static viewer only draw `text/html`. The `anam` renderer
emits both for every figure; the HTML is a `<div>` and one `Plotly.newPlot` call that expects
plotly.js on the page, which `plotlyjs_bundle` carries, inlined once per notebook (no CDN).
"""

from __future__ import annotations

from typing import Any

import plotly.io as pio
from plotly.io._base_renderers import PlotlyRenderer
from plotly.offline import get_plotlyjs

PLOTLY_MIME = "application/vnd.plotly.v1+json"
RENDERER_NAME = "anam"
# Output metadata marking the one output that loads plotly.js, so a renderer can find it.
LOADER_METADATA = {"anam_notebooks": {"plotlyjs": True}}
_CONFIG = {"displaylogo": False, "responsive": True}


def figure_html(figure: Any) -> str:
    """A figure (Figure or dict) as a div plus script that expects plotly.js already loaded."""
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config=_CONFIG, default_width="100%")


class OfflineRenderer(PlotlyRenderer):
    """plotly's mimetype renderer, with the `text/html` twin that static pages draw."""

    def __init__(self) -> None:
        super().__init__(config=_CONFIG)

    def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, Any]:
        bundle = dict(super().to_mimebundle(fig_dict))
        bundle["text/html"] = figure_html(fig_dict)
        return bundle


def plotlyjs_script() -> str:
    """plotly.js in one inline `<script>` (the library sets `window.Plotly`; nothing fetched)."""
    return "<script>" + get_plotlyjs().replace("</script", "<\\/script") + "</script>"


def plotlyjs_bundle() -> tuple[dict[str, str], dict[str, Any]]:
    """(data, metadata) of the one display output that loads plotly.js for a notebook's figures."""
    return {"text/html": plotlyjs_script(), "text/plain": ""}, dict(LOADER_METADATA)


def use_offline_renderer() -> None:
    """Make `anam` (mimetype + offline HTML) plotly's default renderer in this process."""
    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = OfflineRenderer()
    pio.renderers.default = RENDERER_NAME
