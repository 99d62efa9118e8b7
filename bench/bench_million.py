"""A million sessions on one laptop: `fetch_sessions(cache=...)` over 1,000,000 simulator
sessions, each step in a child process against a server in its own process.

Prints, all from one run:
- the full first read: time, peak RSS of the child (target <= 1.5 GB) next to the frame's own
  deep size, and the list pages it needed;
- resume after SIGKILL at half way: pages the second run read, as a fraction of a full read
  (target <= 60 %), and that it ends with exactly the server's sessions;
- a warm refresh with 1 % of the sessions still marked active (the fleet's own active head
  plus "zombies" that never got an end time, spread over the week): requests sent (target <= 60);
- the notebooks' analyses and figures on the 1M frame, with times.

`python -m bench million` (SESSIONS=200000 in the environment for a quicker look).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from . import ask, commanded_process, peak_rss_bytes

SESSIONS = int(os.environ.get("SESSIONS", 1_000_000))
END = datetime(2026, 4, 20, 12, tzinfo=UTC)
ZOMBIES = 0.01  # share of sessions left "active" for good
RSS_TARGET_GB = 1.5

CHILD = """
import json, sys, time
from bench import peak_rss_bytes
from anam_notebooks import AnamClient, fetch_sessions
from anam_notebooks.simulator import DEMO_API_KEY
url, cache = sys.argv[1], sys.argv[2]
began = time.perf_counter()
with AnamClient(DEMO_API_KEY, url, concurrency=16) as client:
    df = fetch_sessions(client, cache=cache, progress=False)
elapsed = time.perf_counter() - began
print(json.dumps({"rows": len(df), "seconds": elapsed,
                  "deep_mb": df.memory_usage(deep=True).sum() / 1e6,
                  "rss_mb": peak_rss_bytes() / 2**20,
                  "active": int(df.is_active.sum()), "stale": int(df.stale_active.sum())}))
"""


def _serve(sessions: int, pipe) -> None:
    """The server process: a fleet with zombies, uvicorn, and a command loop for stats."""
    import numpy as np

    from anam_notebooks.simulator import create_app, generate_fleet, running_server

    began = time.perf_counter()
    fleet = generate_fleet(seed=1, sessions=sessions, span="7d", end=END)
    rng = np.random.default_rng(2)
    for i in rng.choice(len(fleet.sessions), size=int(ZOMBIES * sessions), replace=False):
        fleet.sessions[i].update(endTime=None, sessionLengthMs=None, exitStatus=None)
    generated = time.perf_counter() - began
    app = create_app(fleet)
    simulator = app.state.simulator
    with running_server(app) as url:
        pipe.send((url, generated))
        while True:
            command = pipe.recv()
            if command == "stats":
                pipe.send({k: v for k, v in simulator.stats.items() if isinstance(k, str)})
            elif command == "reset":
                simulator.reset_stats()
                pipe.send(True)
            elif command == "ids":
                pipe.send(sorted(simulator.fleet.by_id))
            else:
                return


@contextmanager
def server(sessions: int) -> Iterator[tuple[str, float, object]]:
    with commanded_process(_serve, sessions) as ((url, generated), pipe):
        yield url, generated, pipe


def _child_command(url: str, cache: Path) -> list[str]:
    """A fresh interpreter running CHILD, with this process's import path (for `bench`)."""
    return [sys.executable, "-c", f"import sys; sys.path[:0] = {sys.path!r}\n" + CHILD, url, str(cache)]


def fetch_child(url: str, cache: Path) -> dict:
    out = subprocess.run(_child_command(url, cache), check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def killed_at_half(command: list[str], cache: Path, sessions: int) -> int:
    """Start `command` (a first read into `cache`) and SIGKILL it once its checkpoint holds
    half the sessions; how many it had stored."""
    child = subprocess.Popen(command,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored = 0
    try:
        while child.poll() is None:
            for checkpoint in cache.glob("sessions-*/_backfill.json"):
                try:
                    stored = json.loads(checkpoint.read_text())["stored"]
                except (OSError, ValueError, KeyError):
                    continue
            if stored >= sessions // 2:
                break
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return stored


def analyses(cache: Path, url: str) -> None:
    """Every analysis and figure of the notebooks, timed on the cached frame."""
    from anam_notebooks import analysis, plots
    from anam_notebooks.data.store import SessionStore

    [dataset] = [p for p in cache.iterdir() if p.is_dir()]
    meta = json.loads((dataset / "_store.json").read_text())
    base, _, org = meta["key"].partition("\n")
    store = SessionStore(cache, base_url=base, organization_id=org or None)
    began = time.perf_counter()
    df = store.load()
    print(f"  load the cache ({len(df):,} rows, {len(store.partitions())} partitions): "
          f"{time.perf_counter() - began:6.2f} s")
    steps = [
        ("analysis.failure_rates(by=engine_pod)", lambda: analysis.failure_rates(df, by="engine_pod")),
        ("analysis.rank_suspects", lambda: analysis.rank_suspects(df)),
        ("analysis.exit_status_shift", lambda: analysis.exit_status_shift(df, df["start_time"].median())),
        ("plots.session_timeline", lambda: plots.session_timeline(df)),
        ("plots.host_health", lambda: plots.host_health(df)),
        ("plots.exit_status_over_time", lambda: plots.exit_status_over_time(df)),
        ("plots.duration_distribution", lambda: plots.duration_distribution(df)),
    ]
    for name, step in steps:
        began = time.perf_counter()
        result = step()
        built = time.perf_counter() - began
        size = f", JSON {len(result.to_json()) / 1e6:5.1f} MB" if hasattr(result, "to_json") and \
            name.startswith("plots") else ""
        print(f"  {name:<40} {built:6.2f} s{size}")


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, server(SESSIONS) as (url, generated, pipe):
        print(f"{SESSIONS:,} simulator sessions ({ZOMBIES:.0%} left active for good), "
              f"fleet built in {generated:.1f} s; server in its own process")
        # 1. a full first read
        full_cache = Path(scratch) / "full"
        ask(pipe, "reset")
        first = fetch_child(url, full_cache)
        pages = ask(pipe, "stats").get("list", 0)
        print(f"  first read     : {first['rows']:,} rows in {first['seconds']:.1f} s, {pages} list "
              f"requests; peak RSS {first['rss_mb']:.0f} MB (target <= {RSS_TARGET_GB * 1000:.0f}), "
              f"frame deep size {first['deep_mb']:.0f} MB ({first['deep_mb'] * 1e6 / first['rows']:.0f} B/row)")
        # 2. killed at half way, then resumed
        resumed_cache = Path(scratch) / "resumed"
        ask(pipe, "reset")
        stored = killed_at_half(_child_command(url, resumed_cache), resumed_cache, SESSIONS)
        before = ask(pipe, "stats").get("list", 0)
        ask(pipe, "reset")
        second = fetch_child(url, resumed_cache)
        after = ask(pipe, "stats").get("list", 0)
        exact = second["rows"] == first["rows"] == len(ask(pipe, "ids"))
        print(f"  killed at {stored / SESSIONS:4.0%} ({before} list requests), the resumed run read "
              f"{after} pages = {after / pages:4.0%} of a full read (target <= 60 %); "
              f"{second['rows']:,} rows, exactly the server's: {exact}")
        # 3. a warm refresh with nothing new
        ask(pipe, "reset")
        warm = fetch_child(url, full_cache)
        stats = ask(pipe, "stats")
        sent = stats.get("total", 0)
        print(f"  warm refresh   : {sent} requests ({stats.get('list', 0)} list, {stats.get('get', 0)} "
              f"single GETs; target <= 60) with {warm['active']:,} sessions active "
              f"({warm['active'] / warm['rows']:.1%}), {warm['stale']:,} flagged stale_active; "
              f"{warm['seconds']:.1f} s, peak RSS {warm['rss_mb']:.0f} MB")
        analyses(full_cache, url)
    print(f"  (this process: peak RSS {peak_rss_bytes() / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
