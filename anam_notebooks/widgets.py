"""ipywidgets for investigations (the public `anam_notebooks.widgets` namespace)."""

from .views.explorer import SessionExplorer
from .views.lookup import SessionLookup
from .views.redact import REDACTED, redact

__all__ = ["REDACTED", "SessionExplorer", "SessionLookup", "redact"]
