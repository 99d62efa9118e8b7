"""What both widgets share: figures in an Output, the stylesheet, error wording, static HTML."""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
import plotly.io as pio

from ..api.errors import (
    AnamAPIError,
    AnamConnectionError,
    AnamError,
    AuthenticationError,
    ConfigurationError,
    InvalidSessionId,
    NotFoundError,
)
from . import html as _html


def headless_run() -> bool:
    """True while a kernel runs a cell for a client that takes no input: papermill and nbclient
    execute with `allow_stdin=False`; JupyterLab, Notebook and VS Code send True."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and getattr(kernel, "_allow_stdin", True) is False


def show_figure(output: W.Output, fig: go.Figure | None) -> None:
    """Put a figure in an Output as the plotly mimetype (no kernel needed, no CDN)."""
    if fig is None:
        output.outputs = ()
        return
    spec = json.loads(pio.to_json(fig, validate=False))
    spec["config"] = {"displaylogo": False}
    output.outputs = ({"output_type": "display_data", "metadata": {},
                       "data": {"application/vnd.plotly.v1+json": spec,
                                "text/plain": f"<Figure: {fig.layout.title.text or ''}>"}},)


def style_widget() -> W.HTML:
    """The cards', tables' and messages' stylesheet for the live view (a hidden `<style>`):
    without it JupyterLab shows an inline error as plain text and a card without its border."""
    return W.HTML(_html.style(), layout=W.Layout(display="none"))


def error_text(exc: BaseException) -> str:
    """What the person reading the notebook should know about a failure, without a traceback."""
    if isinstance(exc, InvalidSessionId):
        return str(exc)
    if isinstance(exc, NotFoundError):
        return f"Not found (404): {exc}"
    if isinstance(exc, AuthenticationError):
        return ("The API refused the API key (401): check ANAM_API_KEY or the key given to "
                "the client.")
    if isinstance(exc, AnamConnectionError):
        return f"Could not reach the Anam API: {exc}"
    if isinstance(exc, AnamAPIError):
        return f"The API answered {exc.status_code}: {exc}"
    if isinstance(exc, ConfigurationError):
        return f"The client is not configured: {exc}"
    if isinstance(exc, AnamError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}"


class StaticRendering:
    """The live widget view plus its static HTML (`_repr_html_`), so reports and frontends
    without a widget manager never show a blank widget."""

    def _repr_html_(self) -> str:
        raise NotImplementedError  # each widget renders its own current state

    @property
    def html(self) -> str:
        """The latest static rendering (same as `_repr_html_()`)."""
        return self._repr_html_()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # Run headless (papermill), nobody will ever drive the widget, and a saved widget view
        # would win over the static HTML in `jupyter nbconvert` (then draw nothing offline).
        data = {} if headless_run() else dict(W.Widget._repr_mimebundle_(self, **kwargs) or {})
        data["text/html"] = self._repr_html_()
        data.setdefault("text/plain", f"<{type(self).__name__}>")
        return data
