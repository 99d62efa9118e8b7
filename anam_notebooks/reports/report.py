"""Notebook → executed notebook → self-contained HTML report, against the API or the simulator.

`make_reports` is what `anam-notebooks demo` and `anam-notebooks report` run: it executes each
notebook with papermill (the key travels in the kernel's environment, never as a parameter),
renders HTML with a header saying which data the report covers, and keeps going past a notebook
that fails so the others still get their report.
"""

from __future__ import annotations

import ast
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from ..api.config import API_KEY_ENV, API_URL_ENV, api_key_from_env, base_url_from_env
from ..data.timespan import parse_window
from .execute import notebook_parameters, run_notebook
from .render import write_report


@dataclass(frozen=True)
class Report:
    notebook: Path
    executed: Path
    html: Path | None
    error: str | None = None


def _default(spec: Any) -> Any:
    try:
        return ast.literal_eval(spec["default"])
    except (ValueError, SyntaxError, KeyError):
        return None


def _window_text(since: Any, until: Any, generated: datetime) -> str:
    start, end = parse_window(since, until, now=generated)
    fmt = "%Y-%m-%d %H:%M UTC"
    first = f"{start:{fmt}}" if start is not None else "the first session"
    last = f"{end:{fmt}}" if end is not None else f"{generated:{fmt}} (now)"
    described = f" (since={since!r})" if isinstance(since, str) else ""
    return f"{first} → {last}{described}"


def header_facts(notebook: Path, parameters: Mapping[str, Any], source: str,
                 generated: datetime) -> list[tuple[str, str]]:
    """The facts at the top of a report: data window, source, time, non-default parameters."""
    declared = notebook_parameters(notebook)
    values = {name: parameters.get(name, _default(spec)) for name, spec in declared.items()}
    facts = []
    if "since" in values or "until" in values:
        try:
            facts.append(("Data window", _window_text(values.get("since"), values.get("until"), generated)))
        except ValueError as exc:
            facts.append(("Data window", f"invalid: {exc}"))
    facts.append(("Source", source))
    facts.append(("Generated", f"{generated:%Y-%m-%d %H:%M:%S} UTC"))
    given = {k: v for k, v in parameters.items() if k in declared}
    if given:
        facts.append(("Parameters", ", ".join(f"{k}={v!r}" for k, v in sorted(given.items()))))
    return facts


def make_report(notebook: str | Path, out_dir: str | Path, parameters: Mapping[str, Any] | None = None,
                *, source: str, env: Mapping[str, str | None] | None = None,
                keep_input: bool = False) -> Report:
    """Execute one notebook and render its HTML report into `out_dir`.

    A notebook that fails still gets a report (showing the error) and `Report.error`.
    """
    import papermill as pm

    notebook, out_dir = Path(notebook), Path(out_dir)
    parameters = dict(parameters or {})
    generated = datetime.now(UTC)
    facts = header_facts(notebook, parameters, source, generated)
    executed = out_dir / f"{notebook.stem}.ipynb"
    error = None
    nb: nbformat.NotebookNode | Path
    try:
        nb = run_notebook(notebook, executed, parameters, env=env)
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
        if not executed.exists():
            return Report(notebook, executed, None, error)
        nb = executed  # the partly executed notebook still renders, error cell included
    title = notebook.stem.split("_", 1)[-1].replace("_", " ").capitalize()
    html = write_report(nb, out_dir / f"{notebook.stem}.html", title=title, facts=facts,
                        keep_input=keep_input)
    return Report(notebook, executed, html, error)


@contextmanager
def simulator_environment(fleet: Any = None, *, api_key: str | None = None,
                          **fleet_options: Any) -> Iterator[tuple[dict[str, str], str]]:
    """Serve the simulator on loopback for the length of the block (a fresh random key unless
    `api_key` is given); yields the kernel environment pointing at it and a source description.
    """
    from ..simulator import DEMO_FLEET, create_app, generate_fleet, running_server

    if fleet is None:
        fleet = generate_fleet(**{**DEMO_FLEET, **fleet_options})
    key = api_key or "demo-" + secrets.token_urlsafe(16)
    app = create_app(fleet, api_key=key)
    with running_server(app) as url:
        yield ({API_URL_ENV: url, API_KEY_ENV: key},
               f"built-in simulator at {url}: {len(fleet.sessions):,} generated sessions")


def configured_source() -> str:
    """Where the configured API lives, for a report header (never the key)."""
    return f"Anam API at {base_url_from_env()}"


def make_reports(notebooks: Sequence[str | Path], out_dir: str | Path,
                 parameters: Mapping[str, Any] | None = None, *, keep_input: bool = False,
                 environment: tuple[Mapping[str, str | None], str] | None = None) -> list[Report]:
    """Reports for several notebooks, one after the other.

    `environment` is (kernel environment, source description), e.g. from
    `simulator_environment`; without it, the configured API when ANAM_API_KEY is set, else a
    simulator served for the length of the call.
    """
    if environment is None and api_key_from_env() is None:
        with simulator_environment() as environment:
            return make_reports(notebooks, out_dir, parameters, keep_input=keep_input,
                                environment=environment)
    env, source = environment if environment is not None else ({}, configured_source())
    return [make_report(nb, out_dir, parameters, source=source, env=env, keep_input=keep_input)
            for nb in notebooks]
