"""pyproject.toml and environment.yml declare the same runtime dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# pip name -> conda-forge name, where they differ (nest-asyncio is the same on both sides).
CONDA_NAMES: dict[str, str] = {"kaleido": "python-kaleido"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split(requirement: str) -> tuple[str, str]:
    """(conda name, version bound) of a requirement string."""
    match = REQUIREMENT.match(requirement)
    assert match, f"unreadable requirement {requirement!r}"
    name = normalize(match.group(1))
    return CONDA_NAMES.get(name, name), match.group(3).replace(" ", "")


def dependency_problems(root: Path) -> list[str]:
    """Every way the two files disagree about runtime dependencies (empty when they agree)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime = dict(map(split, project["dependencies"]))
    optional = {split(r)[0] for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    deps = yaml.safe_load((root / "environment.yml").read_text())["dependencies"]
    conda = {n: s for n, s in (split(d) for d in deps if isinstance(d, str)) if n not in ("python", "pip")}
    pip = [item for d in deps if isinstance(d, dict) for item in d.get("pip", [])]
    problems = [f"environment.yml lacks {n}" for n in sorted(set(runtime) - set(conda))]
    # The conda environment may add tools pyproject declares as extras (JupyterLab), nothing else.
    problems += [f"pyproject.toml never declares {n}" for n in sorted(set(conda) - set(runtime) - optional)]
    problems += [f"{n}: pyproject says {runtime[n]!r}, environment.yml {conda[n]!r}"
                 for n in sorted(set(runtime) & set(conda)) if runtime[n] != conda[n]]
    if not {"-e .", "."} & set(pip):
        problems.append("environment.yml does not install the package itself (pip: -e .)")
    return problems


def test_pyproject_and_environment_agree():
    assert dependency_problems(ROOT) == []


def test_a_dependency_missing_on_either_side_is_caught(tmp_path):
    pyproject = (ROOT / "pyproject.toml").read_text()
    environment = (ROOT / "environment.yml").read_text()
    assert "nest-asyncio>=1.6" in environment and '"nest-asyncio>=1.6",' in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "environment.yml").write_text(environment.replace("  - nest-asyncio>=1.6\n", ""))
    assert dependency_problems(tmp_path) == ["environment.yml lacks nest-asyncio"]
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('    "nest-asyncio>=1.6",\n', ""))
    (tmp_path / "environment.yml").write_text(environment)
    assert dependency_problems(tmp_path) == ["pyproject.toml never declares nest-asyncio"]
    (tmp_path / "environment.yml").write_text(environment.replace("nest-asyncio>=1.6", "nest-asyncio>=1.5"))
    (tmp_path / "pyproject.toml").write_text(pyproject)
    assert dependency_problems(tmp_path) == ["nest-asyncio: pyproject says '>=1.6', environment.yml '>=1.5'"]
