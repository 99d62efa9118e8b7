"""The API reference is built from the docstrings: every public function and method says what
it takes (Parameters), what it gives (Returns) and what it raises (Raises), NumPy style, and
names exactly the parameters it has. (`make docs` builds the reference with warnings as errors.)"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import anam_notebooks as an

# Public callables that raise nothing of their own: widget actions show every failure inline
# (a notebook keeps running), closing and redacting cannot fail.
RAISES_NOTHING = {"widgets.redact", "AnamClient.close", "AsyncAnamClient.aclose", "SessionLookup.lookup",
                  "SessionLookup.open_session", "SessionLookup.fetch_recording", "SessionExplorer.filtered",
                  "SessionExplorer.refresh", "SessionExplorer.open_session", "analysis.verdict_findings",
                  "analysis.session_summary", "RedactedClient.close"}
SECTION = re.compile(r"^(Parameters|Attributes|Returns|Yields|Raises)\n-{3,}\n", re.MULTILINE)


def _public() -> Iterator[tuple[str, Callable[..., Any]]]:
    namespaces = {"": an, "analysis.": an.analysis, "plots.": an.plots, "widgets.": an.widgets}
    seen: set[int] = set()
    for prefix, module in namespaces.items():
        for name in module.__all__:
            value = getattr(module, name)
            if id(value) in seen or not callable(value) or name.isupper():  # constants such as DEFAULT_FAILURES
                continue
            if inspect.isclass(value) and issubclass(value, BaseException):
                continue
            seen.add(id(value))
            if inspect.isclass(value):
                yield prefix + name, value
                if getattr(value, "_is_protocol", False):   # a contract: its implementations document it
                    continue
                for attr, member in vars(value).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        yield f"{prefix}{name}.{attr}", member
            elif inspect.isfunction(value):
                yield prefix + name, value


PUBLIC = dict(_public())


def _sections(doc: str) -> dict[str, str]:
    parts = SECTION.split(doc)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_callable_has_numpy_sections(name):
    obj = PUBLIC[name]
    doc = inspect.cleandoc(obj.__doc__ or "")
    assert doc, f"{name} has no docstring"
    sections = _sections(doc)
    target = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(target)
    params = [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]
    if getattr(obj, "_is_protocol", False):   # a contract (SessionSource) is never constructed
        params = []
    # A result type (a dataclass) documents its fields as Attributes; anything else its Parameters.
    heading = "Attributes" if dataclasses.is_dataclass(obj) else "Parameters"
    if params:
        assert heading in sections, f"{name}: no {heading} section"
        # NumPy style: "name : type", "a, b : type" or a bare "name" line, at the left margin.
        heads = re.findall(r"^(\**\w+(?:, \**\w+)*)\s*(?::|$)", sections[heading], re.MULTILINE)
        documented = [n.strip("*") for head in heads for n in head.split(", ")]
        assert documented == params, f"{name}: Parameters documents {documented}, the signature has {params}"
    if not inspect.isclass(obj):
        returns = signature.return_annotation
        if returns not in (None, "None", inspect.Signature.empty):
            assert "Returns" in sections or "Yields" in sections, f"{name}: no Returns section"
        if name not in RAISES_NOTHING:
            assert "Raises" in sections, f"{name}: no Raises section"


def test_the_check_sees_the_whole_public_surface():
    for name in ("fetch_sessions", "connect", "sessions_frame", "AnamClient.get_session",
                 "AnamClient.iter_sessions", "analysis.rank_suspects", "plots.session_timeline",
                 "SessionLookup", "SessionLookup.lookup"):
        assert name in PUBLIC


def test_the_reference_lists_every_public_name():
    from pathlib import Path

    pages = "\n".join(p.read_text() for p in (Path(__file__).parent.parent / "docs").rglob("*.md"))
    listed = set(re.findall(r"^::: anam_notebooks\.([\w.]+)", pages, re.MULTILINE))
    owners = {name for name in PUBLIC if "." not in name or name.split(".")[0] in ("analysis", "plots", "widgets")}
    classes = {n.rsplit(".", 1)[0] for n in PUBLIC if n.count(".") == 1 and n.split(".")[0][0].isupper()}
    missing = sorted(n for n in owners - classes if n not in listed and n.split(".")[0] not in classes)
    missing += sorted(c for c in classes if c not in listed)
    assert not missing, f"add these to a page under docs/reference: {missing}"


def test_every_lazy_export_is_visible_to_static_tools():
    """The reference (griffe) and type checkers read the TYPE_CHECKING imports, not __getattr__."""
    import ast

    tree = ast.parse(inspect.getsource(an))
    block = next(node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
    imported = {alias.asname or alias.name for node in ast.walk(block) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert set(an._LAZY) <= imported, sorted(set(an._LAZY) - imported)
