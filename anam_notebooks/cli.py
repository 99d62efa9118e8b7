"""The `anam-notebooks` command: one function per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from ._config import API_KEY_ENV, API_URL_ENV, DEMO_API_KEY


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

    demo = commands.add_parser("demo", help="summarise the simulated fleet's newest sessions",
                               description="Build the simulator in-process and summarise a page of sessions.")
    _add_simulator_options(demo)
    demo.set_defaults(run=demo_summary)
    return parser


def serve_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run uvicorn over a simulator built from the flags; print how to point the toolkit at it."""
    import asyncio

    import uvicorn

    from .demo import create_app
    from .demo.server import bind_socket

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


def demo_summary(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Fetch the newest page from an in-process simulator and print what is in it."""
    from .demo import demo_client

    try:
        client = demo_client(seed=args.seed, sessions=args.sessions, span=args.span)
    except ValueError as exc:
        parser.error(str(exc))
    page = client.list_sessions(page=1, per_page=100)
    records = page["data"]
    statuses = Counter(r.get("exitStatus") or "active" for r in records)
    regions = Counter(_region(r.get("engineHost")) for r in records)
    print(f"Simulated fleet: {page['meta']['total']} sessions; the newest {len(records)}:")
    print("  exit statuses: " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    print("  regions:       " + ", ".join(f"{k} {v}" for k, v in regions.most_common()))
    return 0


def _region(host: object) -> str:
    if isinstance(host, str) and host.startswith("connect-") and "." in host:
        return host[len("connect-"):host.index(".")]
    return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
