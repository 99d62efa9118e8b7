"""Notebook → executed notebook → self-contained HTML report + findings JSON.

`make_reports` is what `anam-notebooks demo` and `anam-notebooks report` run: it executes each
notebook with papermill (the key travels in the kernel's environment, never as a parameter),
renders HTML with a header saying which data the report covers, writes the findings beside it
as `<notebook>.findings.json`, and keeps going past a notebook that fails so the others still
get their report.

The findings file (`FINDINGS_SCHEMA`, version 1) is one JSON object:

- `schema`: "anam-notebooks/findings", `version`: 1
- `notebook`: the notebook's name (stem); `title`
- `window`: {`start`, `end`: ISO-8601 UTC or null (open), `since`, `until`: as given}
- `source`: where the data came from (never a key); `generated_at`: ISO-8601 UTC
- `parameters`: the parameters given (none is ever a secret)
- `stands_out`: true when any finding is listed
- `findings`: most suspicious first, each {`level`, `unit`, `region`, `counts` {sessions,
  failures, ...}, `rates` {rate, baseline, lift, ... as shares 0..1}, `window` {start, end},
  `p_value`, `q_value`, `explained_by`, `sentence`, and with a baseline `status`: "new" or
  "ongoing"}; [] when nothing stands out
- with a baseline (`--baseline PREVIOUS.findings.json`): `resolved`, the previous run's findings
  that no longer stand out (each with `status` "resolved"), and `baseline` {`generated_at`}
- `published`: false when the notebook published no findings at all (then `findings` is [])
- `q`: the q-value threshold the findings used
- `data_notes`: [{`message`, `count`}], the data-quality warnings raised while it ran
- `error`: null, or which cell failed and how
"""

from __future__ import annotations

import ast
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from ..analysis.tracking import compare_findings
from ..api.config import API_KEY_ENV, API_URL_ENV, api_key_from_env, base_url_from_env
from ..data.store import CACHE_DIR_ENV
from ..data.timespan import parse_window
from ..notebook import read_findings
from ..views.static import STATIC_FIGURES_ENV
from .execute import notebook_parameters, run_notebook
from .pdf import PdfError, write_pdf
from .render import report_notes, status_section, write_report

FINDINGS_SCHEMA = "anam-notebooks/findings"
FINDINGS_VERSION = 1

@dataclass(frozen=True)
class Report:
    """What one notebook's run produced: paths, the findings it published, and any error."""

    notebook: Path
    executed: Path
    html: Path | None
    error: str | None = None
    findings_json: Path | None = None
    findings: tuple[dict[str, Any], ...] = ()
    title: str = ""
    pdf: Path | None = None
    compared: tuple[dict[str, Any], ...] | None = None   # with a baseline: compare_findings' result

    @property
    def stands_out(self) -> bool:
        """True when the notebook published at least one finding."""
        return bool(self.findings)

    @property
    def new_findings(self) -> list[dict[str, Any]]:
        """Findings not in the baseline's run (every finding when there was no baseline)."""
        if self.compared is None:
            return list(self.findings)
        return [f for f in self.compared if f.get("status") == "new"]

    @property
    def headline(self) -> str:
        """One line for an index: the first finding, "nothing stands out", or the error."""
        if self.error:
            return f"failed: {self.error}"
        if self.findings:
            more = f" (+{len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
            return str(self.findings[0].get("sentence") or "") + more
        return "Nothing stands out."


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


#: Parameters whose value a redacted report never shows: a search is often a client label.
MASKED_PARAMETERS = ("search",)
MASKED = "(masked)"


def shown_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as a report may show them: with `redact`, the values a customer may have
    written (`MASKED_PARAMETERS`) become "(masked)"."""
    redact = bool(parameters.get("redact"))
    return {k: (MASKED if redact and k in MASKED_PARAMETERS and v is not None else v)
            for k, v in parameters.items()}


def mask_injected_parameters(node: nbformat.NotebookNode,
                             parameters: Mapping[str, Any]) -> nbformat.NotebookNode:
    """The executed notebook with the values `shown_parameters` masks also masked where papermill
    keeps every value given: the injected-parameters cell and the notebook's metadata (the run
    itself used the real ones)."""
    masked = {k for k, v in shown_parameters(parameters).items() if v == MASKED and parameters[k] != MASKED}
    if not masked:
        return node
    recorded = node.get("metadata", {}).get("papermill", {}).get("parameters") or {}
    for name in masked & set(recorded):   # papermill also records them in the metadata
        recorded[name] = MASKED
    for cell in node.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = "\n".join(f"{line.split('=', 1)[0].rstrip()} = {MASKED!r}"
                                    if line.split("=", 1)[0].strip() in masked else line
                                    for line in cell.source.splitlines())
    return node


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
    if values.get("redact"):
        facts.append(("Redacted", "what customers and their users wrote is masked (labels, persona names, "
                                  "prompts, transcripts...)"))
    given = shown_parameters({k: v for k, v in parameters.items() if k in declared})
    if given:
        facts.append(("Parameters", ", ".join(f"{k}={v!r}" for k, v in sorted(given.items()))))
    return facts


def _cell_error(notebook: Path, exc: Any) -> str:
    """Which notebook and cell failed, and how (papermill's error, without the traceback)."""
    where = f"cell [{exc.exec_count}]" if exc.exec_count else f"code cell {exc.cell_index}"
    first = next((line.strip() for line in str(exc.source or "").splitlines() if line.strip()), "")
    shown = f" ({first[:80]}{'…' if len(first) > 80 else ''})" if first else ""
    return f"{notebook.name} failed in {where}{shown}: {exc.ename}: {exc.evalue}"


def _window(values: Mapping[str, Any], generated: datetime) -> dict[str, Any]:
    since, until = values.get("since"), values.get("until")
    try:
        start, end = parse_window(since, until, now=generated)
    except ValueError:
        start = end = None
    iso = (lambda t: None if t is None else t.isoformat().replace("+00:00", "Z"))
    return {"start": iso(start), "end": iso(end) if end is not None else
            generated.isoformat().replace("+00:00", "Z"), "since": since, "until": until}


def findings_document(report: Report, *, parameters: Mapping[str, Any], source: str,
                      generated: datetime, notes: Mapping[str, int], published: bool,
                      q: float | None, baseline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The findings file's content for one report (see the module docstring for the schema)."""
    declared = notebook_parameters(report.notebook)
    values = {name: parameters.get(name, _default(spec)) for name, spec in declared.items()}
    tracked: dict[str, Any] = {}
    if report.compared is not None:
        tracked = {"findings": [f for f in report.compared if f.get("status") != "resolved"],
                   "resolved": [f for f in report.compared if f.get("status") == "resolved"],
                   "baseline": {"generated_at": (baseline or {}).get("generated_at")}}
    return {
        "schema": FINDINGS_SCHEMA, "version": FINDINGS_VERSION,
        "notebook": report.notebook.stem, "title": report.title,
        "window": _window(values, generated), "source": source,
        "generated_at": generated.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "parameters": shown_parameters({k: v for k, v in parameters.items() if k in declared}),
        "stands_out": bool(report.findings), "published": published, "q": q,
        "findings": list(report.findings),
        "data_notes": [{"message": m, "count": c} for m, c in sorted(notes.items(), key=lambda kv: -kv[1])],
        "error": report.error,
        **tracked,
    }


def _previous_run(baseline: Any) -> str:
    """When the baseline's run was made, as the status box names it."""
    if not isinstance(baseline, Mapping):
        return "none kept: every finding is new"
    when = str(baseline.get("generated_at") or "time unknown")
    return when.replace("T", " ").replace("Z", " UTC")


def load_baseline(path: str | Path, notebook: str | Path) -> dict[str, Any] | None:
    """The previous run's findings file for `notebook`, or None when it does not exist yet (a
    scheduled job's first run: every finding is then new).

    Raises
    ------
    ValueError
        When the file is not a findings file, or belongs to another notebook.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--baseline {str(path)!r} could not be read as JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != FINDINGS_SCHEMA \
            or not isinstance(document.get("findings"), list):
        raise ValueError(f"--baseline {str(path)!r} is not a findings file (<notebook>.findings.json "
                         "written by anam-notebooks report)")
    if document.get("notebook") not in (None, Path(notebook).stem):
        raise ValueError(f"--baseline {str(path)!r} holds the findings of {document.get('notebook')!r}, "
                         f"not of {Path(notebook).stem!r}")
    return document


def _findings_q(nb: Any) -> float | None:
    from ..views.findings import FINDINGS_MIME

    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            value = output.get("data", {}).get(FINDINGS_MIME)
            if isinstance(value, Mapping) and "q" in value:
                return float(value["q"])
    return None


def make_report(notebook: str | Path, out_dir: str | Path, parameters: Mapping[str, Any] | None = None,
                *, source: str, env: Mapping[str, str | None] | None = None,
                keep_input: bool = False, redact: bool = False, static_figures: bool = False,
                pdf: bool = False, baseline: Mapping[str, Any] | None | bool = False) -> Report:
    """Execute one notebook, render its HTML report and its findings JSON into `out_dir`.

    Parameters
    ----------
    notebook : path
        The notebook to run.
    out_dir : path
        Where `<stem>.ipynb`, `<stem>.html` and `<stem>.findings.json` go.
    parameters : mapping, optional
        Papermill parameters the notebook declares (never a key).
    source : str
        Where the data comes from, for the header and the findings file.
    env : mapping, optional
        The kernel's environment overrides (API URL and key).
    keep_input : bool
        Show the code cells.
    redact : bool
        Run with `redact=True` (the notebook must declare a `redact` parameter).
    static_figures : bool
        Give every figure a PNG image too (``ANAM_STATIC_FIGURES=1`` in the kernel).
    pdf : bool
        Also write `<stem>.pdf` beside the HTML (implies `static_figures`).
    baseline : dict, None or False
        The previous run's findings file (`load_baseline`): each finding is marked new, ongoing
        or resolved, in the findings file and at the top of the report. None: there was no
        previous run (everything is new). False: no comparison.

    Returns
    -------
    Report
        A notebook that fails still gets a report (showing the error) and `Report.error`
        naming the notebook and cell (or why the PDF could not be written).

    Raises
    ------
    ValueError
        For a parameter the notebook does not declare, or a key given as a parameter.
    """
    import papermill as pm

    notebook, out_dir = Path(notebook), Path(out_dir)
    parameters = dict(parameters or {})
    title = notebook.stem.split("_", 1)[-1].replace("_", " ").capitalize()
    if redact:
        if "redact" not in notebook_parameters(notebook):
            raise ValueError(f"{notebook.name} declares no `redact` parameter, so it cannot be "
                             "redacted; run it without --redact or add the parameter")
        parameters["redact"] = True
    generated = datetime.now(UTC).replace(microsecond=0)
    facts = header_facts(notebook, parameters, source, generated)
    executed = out_dir / f"{notebook.stem}.ipynb"
    error = None
    if static_figures or pdf:
        env = {**(env or {}), STATIC_FIGURES_ENV: "1"}
    try:
        node = run_notebook(notebook, executed, parameters, env=env)
    except pm.PapermillExecutionError as exc:
        error = _cell_error(notebook, exc)
        if not executed.exists():
            return Report(notebook, executed, None, error, title=title)
        node = nbformat.read(str(executed), as_version=4)
    if parameters.get("redact"):
        node = mask_injected_parameters(node, parameters)
        nbformat.write(node, str(executed))
    found = read_findings(node)
    compared = None if baseline is False else tuple(compare_findings(
        baseline if isinstance(baseline, Mapping) else None, found or []))
    status = "" if compared is None else status_section(compared, _previous_run(baseline))
    html = write_report(node, out_dir / f"{notebook.stem}.html", title=title, facts=facts,
                        keep_input=keep_input, status=status)
    pdf_path = None
    if pdf:
        try:
            pdf_path = write_pdf(node, out_dir / f"{notebook.stem}.pdf", title=title, facts=facts,
                                 keep_input=keep_input, status=status)
        except PdfError as exc:
            error = error or f"{notebook.name}: {exc}"
    report = Report(notebook, executed, html, error, out_dir / f"{notebook.stem}.findings.json",
                    tuple(found or ()), title, pdf_path, compared)
    document = findings_document(report, parameters=parameters, source=source, generated=generated,
                                 notes=report_notes(node), published=found is not None,
                                 q=_findings_q(node), baseline=baseline if isinstance(baseline, Mapping) else None)
    assert report.findings_json is not None
    report.findings_json.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str)
                                    + "\n", encoding="utf-8")
    return report


@contextmanager
def simulator_environment(fleet: Any = None, *, api_key: str | None = None,
                          **fleet_options: Any) -> Iterator[tuple[dict[str, str], str]]:
    """Serve the simulator on loopback for the length of the block (a fresh random key unless
    `api_key` is given); yields the kernel environment pointing at it and a source description.

    The kernels get a session cache of their own (``ANAM_NOTEBOOKS_CACHE``, a temporary folder
    removed afterwards): the notebooks of one run share it (the first reads the fleet, the rest
    only refresh), and a generated fleet never lands in the user's cache.
    """
    from ..simulator import DEMO_FLEET, create_app, generate_fleet, running_server

    if fleet is None:
        fleet = generate_fleet(**{**DEMO_FLEET, **fleet_options})
    key = api_key or "demo-" + secrets.token_urlsafe(16)
    app = create_app(fleet, api_key=key)
    with running_server(app) as url, tempfile.TemporaryDirectory(prefix="anam-demo-cache-") as cache:
        yield ({API_URL_ENV: url, API_KEY_ENV: key, CACHE_DIR_ENV: cache},
               f"built-in simulator at {url}: {len(fleet.sessions):,} generated sessions")


def configured_source() -> str:
    """Where the configured API lives, for a report header (never the key)."""
    return f"Anam API at {base_url_from_env()}"


def make_reports(notebooks: Sequence[str | Path], out_dir: str | Path,
                 parameters: Mapping[str, Any] | None = None, *, keep_input: bool = False,
                 redact: bool = False, static_figures: bool = False, pdf: bool = False,
                 baseline: Mapping[str, Any] | None | bool = False,
                 environment: tuple[Mapping[str, str | None], str] | None = None,
                 progress: Callable[[str], None] | None = None) -> list[Report]:
    """Reports for several notebooks, one after the other.

    Parameters
    ----------
    notebooks : sequence of paths
        The notebooks to run.
    out_dir : path
        Where the reports go.
    parameters : mapping, optional
        Papermill parameters given to every notebook.
    keep_input : bool
        Show the code cells.
    redact : bool
        Mask transcript text, client labels and system prompts (see `make_report`).
    static_figures, pdf, baseline
        As `make_report` takes them (a baseline belongs to one notebook: give one notebook).
    environment : (mapping, str), optional
        (kernel environment, source description), e.g. from `simulator_environment`; without
        it, the configured API when ANAM_API_KEY is set, else a simulator served for the call.
    progress : callable, optional
        Called with one line before each notebook runs (the CLI prints it to stderr).

    Returns
    -------
    list of Report

    Raises
    ------
    ValueError
        As `make_report` does.
    """
    if environment is None and api_key_from_env() is None:
        with simulator_environment() as environment:
            return make_reports(notebooks, out_dir, parameters, keep_input=keep_input,
                                redact=redact, static_figures=static_figures, pdf=pdf,
                                baseline=baseline, environment=environment, progress=progress)
    env, source = environment if environment is not None else ({}, configured_source())
    reports = []
    for n, nb in enumerate(notebooks, start=1):
        if progress is not None:
            progress(f"[{n}/{len(notebooks)}] running {Path(nb).name}")
        reports.append(make_report(nb, out_dir, parameters, source=source, env=env,
                                   keep_input=keep_input, redact=redact, static_figures=static_figures,
                                   pdf=pdf, baseline=baseline))
    return reports


def write_index(reports: Sequence[Report], out_dir: str | Path, *, source: str = "") -> Path:
    """`index.html` in `out_dir` linking every report with its headline finding (escaped).

    Parameters
    ----------
    reports : sequence of Report
    out_dir : path
    source : str
        Where the data came from, shown once at the top.

    Returns
    -------
    Path
        The index file.
    """
    from ..views import html as _html
    from ..views.findings import callout_style

    out_dir = Path(out_dir)
    rows = []
    for report in reports:
        name = report.title or report.notebook.stem
        link = (f'<a href="{_html.esc(report.html.name)}">{_html.esc(name)}</a>'
                if report.html is not None else _html.esc(name))
        kind = "failed" if report.error else ("stands-out" if report.stands_out else "quiet")
        rows.append(f'<li class="{kind}"><h2>{link}</h2><p>{_html.esc(report.headline)}</p></li>')
    generated = datetime.now(UTC)
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Anam session reports</title>" + callout_style() +
            "<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}"
            "ul{list-style:none;padding:0}li{border:1px solid #ddd;border-left:6px solid #067647;"
            "padding:.4em 1em;margin:.6em 0;border-radius:4px}li.stands-out{border-left-color:#b42318}"
            "li.failed{border-left-color:#7a271a;background:#fef3f2}h2{font-size:1.1em;margin:.2em 0}"
            "p{margin:.2em 0;overflow-wrap:anywhere}</style></head><body>"
            "<h1>Anam session reports</h1>"
            f"<p>{_html.esc(source)}{' · ' if source else ''}generated "
            f"{generated:%Y-%m-%d %H:%M:%S} UTC</p><ul>{''.join(rows)}</ul></body></html>")
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
