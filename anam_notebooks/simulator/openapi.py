"""The OpenAPI document the simulator conforms to and serves at /openapi.json.

`openapi.json` holds the published `Session` schema verbatim, plus the list, transcript and
recording shapes of the API reference.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def openapi_bytes() -> bytes:
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


def openapi_document() -> dict:
    """A fresh copy of the document (callers may edit it)."""
    return json.loads(openapi_bytes())


def schema(name: str) -> dict:
    """A component schema with its `$ref`s resolvable: the document's components travel along."""
    doc = openapi_document()
    if name not in doc["components"]["schemas"]:
        known = ", ".join(sorted(doc["components"]["schemas"]))
        raise ValueError(f"no schema named {name!r}; known: {known}")
    return {**doc["components"]["schemas"][name], "components": doc["components"]}
