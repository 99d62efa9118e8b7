"""anam-notebooks: investigate Anam AI avatar sessions in Jupyter.

Heavy layers (plots, widgets) load on first use, so `import anam_notebooks` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .api.config import __version__
from .api.errors import (
    AnamAPIError,
    AnamConnectionError,
    AnamError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidSessionId,
    NotFoundError,
    PaginationError,
    RateLimitError,
    ServerError,
)

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and the API reference
    from . import analysis, plots, simulator, widgets
    from .analysis.explain import explain_session
    from .analysis.tracking import compare_findings
    from .api.client import AnamClient, AsyncAnamClient
    from .api.source import SessionSource
    from .data.dataset import SessionDataset
    from .data.sessions import sessions_frame
    from .data.store import SessionStore
    from .data.transcripts import transcript_frame
    from .fetch import (
        connect,
        fetch_sessions,
        fetch_transcripts,
        notebook_cache,
        session_dataset,
        session_source,
        sync_sessions,
    )
    from .notebook import publish_findings, read_findings, setup_notebook
    from .sync import SyncSummary
    from .views.explorer import SessionExplorer
    from .views.lookup import SessionLookup
    from .views.masking import RedactedClient
    from .views.tables import show_table

_LAZY = {
    "AnamClient": "api.client",
    "AsyncAnamClient": "api.client",
    "SessionSource": "api.source",
    "connect": "fetch",
    "fetch_sessions": "fetch",
    "fetch_transcripts": "fetch",
    "notebook_cache": "fetch",
    "session_dataset": "fetch",
    "session_source": "fetch",
    "sync_sessions": "fetch",
    "SessionDataset": "data.dataset",
    "SyncSummary": "sync",
    "sessions_frame": "data.sessions",
    "transcript_frame": "data.transcripts",
    "SessionStore": "data.store",
    "SessionLookup": "views.lookup",
    "RedactedClient": "views.masking",
    "SessionExplorer": "views.explorer",
    "setup_notebook": "notebook",
    "publish_findings": "notebook",
    "read_findings": "notebook",
    "explain_session": "analysis.explain",
    "show_table": "views.tables",
    "compare_findings": "analysis.tracking",
    "analysis": None,
    "plots": None,
    "widgets": None,
    "simulator": None,
}

__all__ = [
    "AnamAPIError", "AnamConnectionError", "AnamError", "AuthenticationError",
    "BadRequestError", "ConfigurationError", "InvalidSessionId", "NotFoundError",
    "PaginationError", "RateLimitError", "ServerError", "__version__", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'anam_notebooks' has no attribute {name!r}")
    module_name = _LAZY[name]
    if module_name is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
