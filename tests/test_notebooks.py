"""The curated notebooks: committed clean, public API only, parameters papermill can set."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

import anam_notebooks
from anam_notebooks.reports.execute import run_notebook

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
PUBLIC_MODULES = {"anam_notebooks", "anam_notebooks.analysis", "anam_notebooks.plots",
                  "anam_notebooks.widgets"}


def test_the_curated_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_session_lookup.ipynb", "02_engine_hosts.ipynb", "03_exit_statuses.ipynb",
        "04_whats_different.ipynb",
        "05_conversation_quality.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_execution_counts(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    nbformat.validate(nbformat.from_dict(raw))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a code cell has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"
    assert "widgets" not in raw["metadata"], f"{path.name}: saved widget state"


def _public_api_violations(source: str) -> list[str]:
    problems = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anam_notebooks"):
            if node.module not in PUBLIC_MODULES:
                problems.append(f"from {node.module} import ...")
            problems += [f"from {node.module} import {a.name}" for a in node.names
                         if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            problems += [f"import {a.name}" for a in node.names
                         if a.name.startswith("anam_notebooks") and a.name not in PUBLIC_MODULES]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            problems.append(f".{node.attr}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_uses_only_the_public_api(path):
    nb = nbformat.read(str(path), as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert _public_api_violations(source) == []
    used = {n.attr for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "an"}
    assert used <= set(anam_notebooks.__all__), used - set(anam_notebooks.__all__)


def test_public_api_check_catches_private_use():
    assert _public_api_violations("from anam_notebooks.api.config import API_KEY_ENV")
    assert _public_api_violations("import anam_notebooks.simulator")
    assert _public_api_violations("an._private()")
    assert not _public_api_violations("from anam_notebooks import analysis, plots")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_are_named_like_fetch_sessions_and_carry_no_key(path):
    params = pm.inspect_notebook(str(path))
    assert {"since", "until", "failures"} <= set(params)
    assert not {n for n in params if "key" in n.lower() and n != "api_key_id"}
    if path.stem == "01_session_lookup":
        assert "session_id" in params
    else:
        assert {"persona_id", "api_key_id", "search", "limit"} <= set(params)
    assert params["since"]["default"].strip("'\"") == "24h"


def test_an_api_key_is_refused_as_a_parameter(tmp_path):
    with pytest.raises(ValueError, match="ANAM_API_KEY"):
        run_notebook(NOTEBOOKS[0], tmp_path / "out.ipynb", {"api_key": "sk-nope"})
    assert not (tmp_path / "out.ipynb").exists()


def test_an_unknown_parameter_is_refused_naming_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="session_id"):
        run_notebook(NOTEBOOKS[0], tmp_path / "out.ipynb", {"sesion_id": "x"})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_set_up_by_one_package_call_with_a_redact_parameter(path):
    """Figures, data notes and redaction come from `an.setup_notebook`, not from cell code."""
    nb = nbformat.read(str(path), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = [s for s in code if "an.setup_notebook(" in s]
    assert len(setup) == 1 and "redact=redact" in setup[0]
    assert code.index(setup[0]) == 1, "the set-up call comes right after the parameters"
    assert not any("an.connect(" in s or "pio.renderers" in s or "plotly.io" in s for s in code)
    params = pm.inspect_notebook(str(path))
    assert params["redact"]["default"] == "False"
    published = sum("an.publish_findings(" in s for s in code)
    assert published == 1 if path.stem[:2] in ("01", "02", "03") else published <= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_reimplements_package_logic(path):
    """Rollout detection, exemplar selection and the neighbour verdict live in `analysis`."""
    nb = nbformat.read(str(path), as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "groupby(\"engine_version\"" not in source and "tz_localize" not in source
    assert "window_start\"]" not in source and "SystemExit" not in source
