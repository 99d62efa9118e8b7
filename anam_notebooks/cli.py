"""The `anam-notebooks` command: one function per subcommand.

Exit codes of `demo` and `report` (for schedulers):

- 0: every report was written (and, with `--fail-on-findings`, nothing stands out)
- 1: a notebook failed (its report shows the failing cell; stderr names it), or its PDF
  could not be written (stderr says why)
- 2: bad usage (an unknown option or parameter, a missing notebook)
- 3: `--fail-on-findings` was given and at least one finding stands out, or
  `--fail-on-new-findings` was given and at least one finding is new (not in `--baseline`)

Report paths go to stdout, one per line; progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .api.config import API_KEY_ENV, API_URL_ENV, api_key_from_env
from .simulator.settings import DEMO_API_KEY, DEMO_FLEET

EXIT_OK = 0
EXIT_NOTEBOOK_FAILED = 1
EXIT_USAGE = 2
EXIT_FINDINGS = 3
_EXIT_CODES = (
    "exit codes:\n"
    f"  {EXIT_OK}  every report written (and nothing stands out, with --fail-on-findings)\n"
    f"  {EXIT_NOTEBOOK_FAILED}  a notebook failed (stderr names the notebook and cell), or its PDF\n"
    "     could not be written\n"
    f"  {EXIT_USAGE}  bad usage\n"
    f"  {EXIT_FINDINGS}  a finding stands out (only with --fail-on-findings), or a finding is new\n"
    "     (only with --fail-on-new-findings: not in the --baseline run)\n"
    "Each report's findings are in <notebook>.findings.json beside its HTML.")


def _add_simulator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=5000, help="sessions in the fleet (default 5000)")
    parser.add_argument("--span", default="7d", help="time the fleet covers, e.g. 90m, 24h, 7d (default 7d)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fleet and the knobs (default 0)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anam-notebooks",
                                     description="Investigate Anam AI avatar sessions.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve-demo", help="serve the simulated Anam API over HTTP",
                                description="Serve the simulated Anam sessions API until interrupted.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port to bind, 0 for any free one (default 8765)")
    serve.add_argument("--api-key", default=None,
                       help=f"the one key the server accepts (default: the demo key {DEMO_API_KEY!r})")
    _add_simulator_options(serve)
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    serve.add_argument("--fault-rate", type=float, default=0.0,
                       help="share of requests answered with a random 500/502/503 (0..1)")
    serve.add_argument("--rate-limit", type=float, default=None,
                       help="requests per second before 429 with Retry-After (default: no limit)")
    serve.add_argument("--drift", type=int, default=0,
                       help="new sessions arriving at the head on every list request")
    serve.set_defaults(run=serve_demo)

    demo = commands.add_parser(
        "demo", help="run the curated notebooks and write HTML reports",
        description=("Execute every notebook in notebooks/ with papermill and render each to a "
                     f"self-contained HTML report. With no {API_KEY_ENV} set, against the built-in "
                     "simulator served on loopback; otherwise against the configured API."))
    _add_report_options(demo)
    demo.add_argument("--notebooks", type=Path, default=None,
                      help="folder of notebooks to run (default: the project's notebooks/)")
    demo.add_argument("--sessions", type=int, default=DEMO_FLEET["sessions"],
                      help=f"simulated sessions (default {DEMO_FLEET['sessions']})")
    demo.add_argument("--span", default=DEMO_FLEET["span"],
                      help=f"time the simulated fleet covers (default {DEMO_FLEET['span']})")
    demo.add_argument("--seed", type=int, default=DEMO_FLEET["seed"], help="seed of the simulated fleet")
    demo.set_defaults(run=demo_reports)

    report = commands.add_parser(
        "report", help="run one notebook against the configured API and write its HTML report",
        description=(f"Execute NOTEBOOK with papermill against the API named by {API_URL_ENV} / "
                     f"{API_KEY_ENV} (the built-in simulator when no key is set) and render it "
                     "to a self-contained HTML report."))
    report.epilog = demo.epilog = _EXIT_CODES
    report.formatter_class = demo.formatter_class = argparse.RawDescriptionHelpFormatter
    report.add_argument("notebook", type=Path, metavar="NOTEBOOK")
    report.add_argument("--baseline", type=Path, default=None, metavar="PREVIOUS.findings.json",
                        help="the previous run's findings file: mark each finding new, ongoing or "
                             "resolved (in the findings file and at the top of the report); a file "
                             "that does not exist yet (the first run) makes every finding new")
    report.add_argument("--fail-on-new-findings", action="store_true",
                        help=f"exit {EXIT_FINDINGS} only when a finding is new (not in --baseline), "
                             "0 otherwise: a scheduled job pages once per cause")
    report.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="set a notebook parameter, e.g. -p since 7d (repeatable)")
    _add_report_options(report)
    report.set_defaults(run=report_one)

    sync = commands.add_parser(
        "sync", help="fill or refresh the local session store (a Parquet dataset) without building a frame",
        description=(f"Read the sessions of the API named by {API_URL_ENV} / {API_KEY_ENV} (the built-in "
                     "simulator when no key is set) into the session store, chunk by chunk; an "
                     "interrupted sync resumes where it stopped. Prints the dataset directory."))
    sync.add_argument("--since", default=None, metavar="SPAN",
                      help="how far back the store must reach: a span such as 30d or an ISO time "
                           "(default: all history)")
    sync.add_argument("--cache", type=Path, default=None, metavar="DIR",
                      help="the cache directory (default: the per-user cache)")
    sync.set_defaults(run=sync_store)
    return parser


def serve_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run uvicorn over a simulator built from the flags; print how to point the toolkit at it."""
    import asyncio

    import uvicorn

    from .simulator import create_app
    from .simulator.server import bind_socket

    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not valid: give 0..65535")
    key = DEMO_API_KEY if args.api_key is None else args.api_key
    try:
        app = create_app(api_key=key, latency=args.latency, fault_rate=args.fault_rate,
                         rate_limit=args.rate_limit, drift=args.drift, seed=args.seed,
                         sessions=args.sessions, span=args.span)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"anam-notebooks serve-demo: {exc.strerror}", file=sys.stderr)
        return 1
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))

    shown_key = key if args.api_key is None else "<the key you gave>"

    async def announce_then_serve() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            url = f"http://{args.host}:{sock.getsockname()[1]}"
            print(f"Simulated Anam API with {args.sessions} sessions at {url}", flush=True)
            print(f"Point the toolkit at it:  {API_URL_ENV}={url} {API_KEY_ENV}={shown_key}", flush=True)
            print("Press Ctrl+C to stop.", flush=True)
        await serving

    try:
        asyncio.run(announce_then_serve())
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0 if server.started else 1


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("reports"),
                        help="folder for the executed notebooks and HTML reports (default reports/)")
    parser.add_argument("--keep-input", action="store_true",
                        help="show the code cells in the reports (hidden by default)")
    parser.add_argument("--redact", action="store_true",
                        help="mask what customers and their users wrote: labels, persona names, prompts, "
                             "transcripts... (counts, statuses, engines and "
                             "figures stay), for a report with a wider audience")
    parser.add_argument("--fail-on-findings", action="store_true",
                        help=f"exit {EXIT_FINDINGS} when any finding stands out (0 when none does), "
                             "so a scheduler can page someone; findings are also written to "
                             "<notebook>.findings.json")
    parser.add_argument("--static-figures", action="store_true",
                        help="give every figure a PNG image too (drawn by the system's Chromium), so "
                             "the executed notebook shows its figures on GitHub, in VS Code or as markdown")
    parser.add_argument("--pdf", action="store_true",
                        help="also write <notebook>.pdf beside the HTML, printed by the system's "
                             "Chromium (implies --static-figures)")


def _parameter_value(text: str) -> Any:
    """A -p value as papermill would read it: None, booleans and numbers typed; text otherwise."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# What must never reach a terminal from data: C0/C1 controls (ESC sequences rewrite the screen,
# set the title, hide text), DEL, and the invisible formatting characters that reorder or hide
# text (bidi overrides and isolates such as U+202E, zero-width and other Unicode format marks).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f"
                          "\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


def terminal_text(text: object) -> str:
    """`text` as it may be printed on a terminal: control and bidi/format characters from
    session data removed (newlines and tabs kept), so data cannot move the cursor, recolour
    or reorder what is shown."""
    return _UNPRINTABLE.sub("", str(text))


def _progress(line: str) -> None:
    print(terminal_text(line), file=sys.stderr, flush=True)


def _print_reports(reports: Sequence[Any], *, fail_on_findings: bool = False,
                   fail_on_new_findings: bool = False) -> int:
    """Paths to stdout, failures to stderr; the exit code (see the module docstring)."""
    failed = 0
    for report in reports:
        if report.html is not None:
            print(terminal_text(report.html))
        if report.pdf is not None:
            print(terminal_text(report.pdf))
        if report.findings_json is not None and report.findings_json.exists():
            print(terminal_text(report.findings_json))
        if report.error:
            failed += 1
            print(terminal_text(report.error), file=sys.stderr)
    if failed:
        return EXIT_NOTEBOOK_FAILED
    standing = [r for r in reports if r.stands_out]
    for report in standing:
        print(terminal_text(f"{report.notebook.name}: {report.headline}"), file=sys.stderr)
    new = [f for r in reports for f in r.new_findings]
    for report in reports:
        if report.compared is not None:
            counts = {s: sum(f.get("status") == s for f in report.compared) for s in ("new", "ongoing", "resolved")}
            print(terminal_text(f"{report.notebook.name}: since the previous run " +
                                ", ".join(f"{n} {s}" for s, n in counts.items())), file=sys.stderr)
    if fail_on_findings and standing:
        return EXIT_FINDINGS
    return EXIT_FINDINGS if fail_on_new_findings and new else EXIT_OK


def demo_reports(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run every curated notebook (against the simulator when no key is set) into HTML reports,
    plus an index.html linking each with its headline finding."""
    from .reports.report import configured_source, make_reports, simulator_environment, write_index

    folder = args.notebooks or Path(__file__).resolve().parent.parent / "notebooks"
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        parser.error(f"no notebooks in {folder}: give --notebooks DIR")
    started = time.monotonic()
    options = {"keep_input": args.keep_input, "redact": args.redact, "progress": _progress,
               "static_figures": args.static_figures, "pdf": args.pdf}
    if api_key_from_env() is None:
        _progress(f"{API_KEY_ENV} is not set: running against the built-in simulator "
                  f"({args.sessions:,} sessions over {args.span}).")
        try:
            with simulator_environment(sessions=args.sessions, span=args.span, seed=args.seed) as (env, source):
                reports = make_reports(notebooks, args.output, environment=(env, source), **options)
        except ValueError as exc:
            parser.error(str(exc))
    else:
        source = configured_source()
        reports = make_reports(notebooks, args.output, **options)
    status = _print_reports(reports, fail_on_findings=args.fail_on_findings)
    print(terminal_text(write_index(reports, args.output, source=source)))
    _progress(f"{len(reports)} reports in {time.monotonic() - started:.0f} s")
    return status


def report_one(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run one notebook against the configured API into an HTML report and its findings JSON."""
    from .reports.report import load_baseline, make_reports

    if not args.notebook.is_file():
        parser.error(f"notebook {str(args.notebook)!r} does not exist")
    parameters = {name: _parameter_value(value) for name, value in args.parameter}
    baseline: Any = False
    try:
        if args.baseline is not None:
            baseline = load_baseline(args.baseline, args.notebook)
            if baseline is None:
                _progress(f"--baseline {str(args.baseline)!r} does not exist yet: every finding is new")
        reports = make_reports([args.notebook], args.output, parameters, keep_input=args.keep_input,
                               redact=args.redact, static_figures=args.static_figures, pdf=args.pdf,
                               baseline=baseline, progress=_progress)
    except ValueError as exc:
        parser.error(str(exc))
    return _print_reports(reports, fail_on_findings=args.fail_on_findings,
                          fail_on_new_findings=args.fail_on_new_findings)


def sync_store(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`anam-notebooks sync`: the store's summary on stdout; exit 1 when the API fails."""
    from .api.errors import AnamError
    from .data.timespan import parse_window
    from .fetch import sync_sessions

    try:
        parse_window(args.since, None)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        summary = sync_sessions(since=args.since, cache=True if args.cache is None else args.cache)
    except AnamError as exc:
        print(f"sync failed: {type(exc).__name__}: {exc} (what was read is stored; run sync again "
              "to go on)", file=sys.stderr)
        return 1
    mark = summary.covered_since
    covered = "all history" if mark is None else "nothing yet" if mark is False else str(mark)
    print(f"{summary.stored:,} sessions stored (since {covered}); this sync read {summary.read:,}",
          file=sys.stderr)
    print(summary.path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
