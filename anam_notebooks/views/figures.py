"""Figures that draw everywhere: the plotly mimetype for JupyterLab plus an offline HTML twin.

JupyterLab draws `application/vnd.plotly.v1+json` with plotly's extension, but `jupyter nbconvert
--to html`, an "Export as HTML" or a static viewer only draw `text/html`. The `anam` renderer
emits both for every figure; the HTML is a `<div>` and one `Plotly.newPlot` call that expects
plotly.js on the page, which `plotlyjs_bundle` carries, inlined once per notebook (no CDN).

With static figures on (`use_offline_renderer(static=True)`), every figure also carries an
`image/png` (see `views.static`), and its HTML twin holds the same image inside the plot's div:
where scripts run the plot replaces it; where they are stripped (GitHub, mail, PDF) it shows.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import plotly.io as pio
from plotly.io._base_renderers import PlotlyRenderer
from plotly.offline import get_plotlyjs

from .static import StaticImages

PLOTLY_MIME = "application/vnd.plotly.v1+json"
RENDERER_NAME = "anam"
# Output metadata marking the one output that loads plotly.js, so a renderer can find it.
LOADER_METADATA = {"anam_notebooks": {"plotlyjs": True}}
_CONFIG = {"displaylogo": False, "responsive": True}
PNG_MIME = "image/png"
STATIC_CLASS = "anam-static-figure"
_PLOT_DIV = re.compile(r'(<div id="[^"]+" class="plotly-graph-div"[^>]*>)(</div>)')
# Runs once the plot is drawn: the static image inside the plot's div gives way to it.
_DROP_IMAGE = ("document.querySelectorAll('[id=\"{plot_id}\"] > img." + STATIC_CLASS + "')"
               ".forEach(function (img) { img.remove(); });")


def figure_html(figure: Any, png: bytes | None = None) -> str:
    """A figure (Figure or dict) as a div plus script that expects plotly.js already loaded;
    with `png`, the image sits inside the div until the plot replaces it."""
    html = pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config=_CONFIG, default_width="100%", post_script=_DROP_IMAGE if png else None)
    if png is None:
        return html
    image = (f'<img class="{STATIC_CLASS}" alt="figure" style="max-width:100%;height:auto" '
             f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')
    with_image, found = _PLOT_DIV.subn(lambda m: m.group(1) + image + m.group(2), html, count=1)
    return with_image if found else image + html


class OfflineRenderer(PlotlyRenderer):
    """plotly's mimetype renderer, with the `text/html` twin that static pages draw, and with
    `images` a PNG for viewers that run no scripts."""

    def __init__(self, images: StaticImages | None = None) -> None:
        super().__init__(config=_CONFIG)
        self.images = images

    def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, Any]:
        bundle = dict(super().to_mimebundle(fig_dict))
        png = self.images.png(fig_dict) if self.images is not None else None
        bundle["text/html"] = figure_html(fig_dict, png)
        if png is not None:
            bundle[PNG_MIME] = base64.b64encode(png).decode("ascii")
        return bundle


def plotlyjs_script() -> str:
    """plotly.js in one inline `<script>` (the library sets `window.Plotly`; nothing fetched)."""
    return "<script>" + get_plotlyjs().replace("</script", "<\\/script") + "</script>"


def plotlyjs_bundle() -> tuple[dict[str, str], dict[str, Any]]:
    """(data, metadata) of the one display output that loads plotly.js for a notebook's figures."""
    return {"text/html": plotlyjs_script(), "text/plain": ""}, dict(LOADER_METADATA)


_IMAGES = StaticImages()   # one browser for the whole process (a notebook's kernel)


def use_offline_renderer(static: bool = False) -> None:
    """Make `anam` (mimetype + offline HTML, and with `static` a PNG) plotly's default renderer
    in this process."""
    renderer = pio.renderers[RENDERER_NAME] if RENDERER_NAME in pio.renderers else None
    if not isinstance(renderer, OfflineRenderer):
        renderer = OfflineRenderer()
        pio.renderers[RENDERER_NAME] = renderer
    renderer.images = _IMAGES if static else None
    pio.renderers.default = RENDERER_NAME
