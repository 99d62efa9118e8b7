"""Past one frame: the session dataset as the engine, and `sync` with memory flat in N.

Prints, all from one run (each measured step in its own child process; memory = its VmHWM):

1. a store of N sessions (default 10,000,000) written straight from the simulator's fleet into
   the store, no HTTP: a week of the fleet (250,000 sessions) repeated week after week with new
   ids, in chunks; kept under `bench/.cache/` so a rerun only measures. Then, on the dataset
   (DuckDB): `failure_rates`, `host_health`, `exit_status_over_time` and the per-unit ×
   hour counts of every attribute (`unit_bucket_counts`, what a ranking needs): time, peak RSS
   (targets: failure_rates and host_health <= 10 s each); and `rank_suspects(dataset)` over
   every attribute in a child of its own (targets: <= 60 s, peak RSS <= 1.5 GB);
2. at 1,000,000 sessions, in the same run: the dataset path against the frame path (load +
   the same calls: time, memory, identical results) and against the floor, DuckDB alone counting
   the same cells (every attribute × hour × failed) with one hand-written query per attribute;
   `rank_suspects` on both paths (identical rankings; target: the dataset within 2.5× the floor);
3. `sync_sessions` of 300,000 and of 1,000,000 simulator sessions over HTTP (server in its own
   process): time and peak RSS (targets: <= 400 MB at 1M, within 10 % of the 300k figure);
   then a sync with since=30d SIGKILLed half way, and the pages the next sync reads (target
   <= 60 % of a full read).

`python -m bench dataset`; DATASET_SESSIONS=2000000 (or `python -m bench.bench_dataset
--sessions 2000000`) for a smaller store, SYNC_SESSIONS=300000,1000000 for the sync sizes;
`--only sync` (or `--only dataset`) for one part.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from . import ask, commanded_process, peak_rss_bytes
from .bench_million import killed_at_half

DATASET_SESSIONS = int(os.environ.get("DATASET_SESSIONS", 10_000_000))
COMPARE_SESSIONS = 1_000_000
SYNC_SESSIONS = [int(n) for n in os.environ.get("SYNC_SESSIONS", "300000,1000000").split(",")]
CACHE = Path(os.environ.get("BENCH_CACHE", Path(__file__).resolve().parent / ".cache"))
END = datetime(2026, 4, 20, 12, tzinfo=UTC)
WEEK = 250_000  # sessions of one generated week; the store repeats it back in time
BASE_URL = "http://simulator.invalid"
ORG = "bench-organisation"


# ---------------------------------------------------------------- the store, no HTTP

def build_store(sessions: int) -> Path:
    """The dataset directory of a store holding `sessions` simulator sessions (cached)."""
    import numpy as np
    import pandas as pd

    from anam_notebooks import sessions_frame
    from anam_notebooks.data.store import SessionStore
    from anam_notebooks.simulator import generate_fleet

    directory = CACHE / f"dataset-{sessions}"
    store = SessionStore(directory, base_url=BASE_URL, organization_id=ORG)
    done = directory / "complete"
    if done.exists():
        return store.path
    store.clear()
    began = time.perf_counter()
    fleet = generate_fleet(seed=1, sessions=min(sessions, WEEK), span="7d", end=END)
    week = sessions_frame(fleet.sessions)
    del fleet
    times = ["start_time", "end_time", "created_at", "updated_at"]
    ids = week.index.to_numpy(dtype=object)
    touched: set[str] = set()
    for k in range(math.ceil(sessions / WEEK)):
        rows = week.iloc[:min(WEEK, sessions - k * WEEK)].copy()
        shift = pd.Timedelta(weeks=k)
        for column in times:
            rows[column] = rows[column] - shift
        rows.index = pd.Index(np.array([f"{k:08x}{i[8:]}" for i in ids[:len(rows)]], dtype=object),
                              dtype=rows.index.dtype, name="id")
        touched |= store.append(rows)
        print(f"    wrote week {k + 1} of {math.ceil(sessions / WEEK)}", end="\r", flush=True)
    store.finish(touched, None)
    done.write_text(str(sessions))
    print(f"  built a {sessions:,}-session store in {time.perf_counter() - began:.0f} s "
          f"({sum(f.stat().st_size for f in store.path.rglob('*.parquet')) / 1e6:.0f} MB of Parquet, "
          f"{len(store.partitions())} partitions)", flush=True)
    return store.path


# ---------------------------------------------------------------- measured children

CHILD = """
import json, pickle, sys, time
from bench import peak_rss_bytes
import pandas as pd
from anam_notebooks import analysis, plots, session_dataset
from anam_notebooks.analysis import DEFAULT_LEVELS
from anam_notebooks.analysis.outcomes import unit_bucket_counts
mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
times, results = {}, {}
began = time.perf_counter()
if mode == "frame":
    from anam_notebooks.data.store import SessionStore
    import pathlib, json as j
    meta = j.loads((pathlib.Path(path) / "_store.json").read_text())
    base, _, org = meta["key"].partition(chr(10))
    source = SessionStore(pathlib.Path(path).parent, base_url=base, organization_id=org or None).load()
    times["load"] = time.perf_counter() - began
else:
    source = session_dataset(path)
    times["open"] = time.perf_counter() - began
steps = {
    "failure_rates": lambda: analysis.failure_rates(source, by="engine_pod"),
    "host_health": lambda: plots.host_health(source),
    "exit_status_over_time": lambda: plots.exit_status_over_time(source),
    "unit_bucket_counts": lambda: unit_bucket_counts(source, DEFAULT_LEVELS, pd.Timedelta("1h")),
}
for name, step in steps.items():
    t = time.perf_counter()
    result = step()
    times[name] = time.perf_counter() - t
    results[name] = result.to_json() if hasattr(result, "to_plotly_json") else result
with open(out, "wb") as f:
    pickle.dump(results, f)
print(json.dumps({"times": times, "rss_mb": peak_rss_bytes() / 2**20}))
"""

RANK = """
import json, pickle, sys, time
from bench import peak_rss_bytes
from anam_notebooks import analysis, session_dataset
mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
began = time.perf_counter()
if mode == "frame":
    from anam_notebooks.data.store import SessionStore
    import pathlib, json as j
    meta = j.loads((pathlib.Path(path) / "_store.json").read_text())
    base, _, org = meta["key"].partition(chr(10))
    source = SessionStore(pathlib.Path(path).parent, base_url=base, organization_id=org or None).load()
else:
    source = session_dataset(path)
opened = time.perf_counter() - began
t, cpu = time.perf_counter(), time.process_time()
ranked = analysis.rank_suspects(source)
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
with open(out, "wb") as f:
    pickle.dump(ranked, f)
print(json.dumps({"open": opened, "seconds": seconds, "cpu": cpu, "rss_mb": peak_rss_bytes() / 2**20,
                  "headlines": int(ranked["flagged"].sum())}))
"""


def rank(mode: str, path: Path, scratch: Path) -> tuple[dict, object]:
    """`rank_suspects` over every attribute in its own child: figures and the ranking."""
    out = scratch / f"rank-{mode}-{path.parent.name}.pickle"
    figures = _run(RANK, mode, str(path), str(out))
    with open(out, "rb") as f:
        return figures, pickle.load(f)


FLOOR = """
import json, sys, time
from bench import peak_rss_bytes
import duckdb
from anam_notebooks.analysis import DEFAULT_LEVELS
path = sys.argv[1]
began = time.perf_counter()
con = duckdb.connect()
cells = 0
for level in DEFAULT_LEVELS:
    answer = con.sql(f'''
        SELECT "{level}" AS unit, floor(epoch(start_time) / 3600) AS hour,
               NOT coalesce(is_active, false) AS ended,
               coalesce(upper(exit_status) LIKE '%ERROR%' OR upper(exit_status) LIKE '%FAIL%', false) AS failed,
               count(*) AS n
        FROM read_parquet('{path}/*/*.parquet', hive_partitioning = false)
        GROUP BY ALL''').arrow()
    cells += (answer.read_all() if hasattr(answer, "read_all") else answer).num_rows  # DuckDB 2: a reader
print(json.dumps({"seconds": time.perf_counter() - began, "cells": cells, "rss_mb": peak_rss_bytes() / 2**20}))
"""


def _python(code: str, *args: str) -> list[str]:
    """A fresh interpreter running `code`, with this process's import path (for `bench`)."""
    return [sys.executable, "-c", f"import sys; sys.path[:0] = {sys.path!r}\n" + code, *args]


def _run(code: str, *args: str) -> dict:
    out = subprocess.run(_python(code, *args), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(mode: str, path: Path, scratch: Path) -> tuple[dict, dict]:
    out = scratch / f"{mode}-{path.parent.name}.pickle"
    figures = _run(CHILD, mode, str(path), str(out))
    with open(out, "rb") as f:
        return figures, pickle.load(f)


def same_results(a: dict, b: dict) -> bool:
    import numpy as np
    import pandas as pd

    if not a["failure_rates"].equals(b["failure_rates"]):
        try:
            pd.testing.assert_frame_equal(a["failure_rates"], b["failure_rates"])
        except AssertionError:
            return False
    if a["host_health"] != b["host_health"] or a["exit_status_over_time"] != b["exit_status_over_time"]:
        return False
    x, y = a["unit_bucket_counts"], b["unit_bucket_counts"]
    return bool(x.buckets.equals(y.buckets) and np.array_equal(x.failures, y.failures) and all(
        np.array_equal(x.levels[k].sessions, y.levels[k].sessions) and
        np.array_equal(x.levels[k].failures, y.levels[k].failures) and
        list(x.levels[k].units) == list(y.levels[k].units) for k in x.levels))


def _times(figures: dict, names: list[str]) -> str:
    return " · ".join(f"{n} {figures['times'][n]:.2f} s" for n in names)


# ---------------------------------------------------------------- sync over HTTP

def _serve(sessions: int, pipe) -> None:
    """The server process: a fleet ending now (so since=30d covers it), uvicorn, stats."""
    from anam_notebooks.simulator import create_app, generate_fleet, running_server

    app = create_app(generate_fleet(seed=1, sessions=sessions, span="7d"))
    simulator = app.state.simulator
    with running_server(app) as url:
        pipe.send(url)
        while True:
            command = pipe.recv()
            if command == "stats":
                pipe.send({k: v for k, v in simulator.stats.items() if isinstance(k, str)})
            elif command == "reset":
                simulator.reset_stats()
                pipe.send(True)
            else:
                return


@contextmanager
def server(sessions: int) -> Iterator[tuple[str, object]]:
    with commanded_process(_serve, sessions) as (url, pipe):
        yield url, pipe


SYNC = """
import json, sys, time
from bench import peak_rss_bytes
from anam_notebooks import AnamClient, sync_sessions
from anam_notebooks.simulator import DEMO_API_KEY
url, cache, since = sys.argv[1], sys.argv[2], (sys.argv[3] or None)
began = time.perf_counter()
with AnamClient(DEMO_API_KEY, url, concurrency=16) as client:
    summary = sync_sessions(client, since=since, cache=cache, progress=False)
print(json.dumps({"stored": summary.stored, "read": summary.read, "seconds": time.perf_counter() - began,
                  "rss_mb": peak_rss_bytes() / 2**20}))
"""


def sync_figures(scratch: Path) -> None:
    peaks = {}
    for n in SYNC_SESSIONS:
        with server(n) as (url, pipe):
            ask(pipe, "reset")
            full = _run(SYNC, url, str(scratch / f"sync-{n}"), "")
            pages = ask(pipe, "stats").get("list", 0)
            peaks[n] = full["rss_mb"]
            print(f"  sync of {n:,} sessions: {full['seconds']:.1f} s, {pages:,} list pages, "
                  f"peak RSS {full['rss_mb']:.0f} MB (target <= 400 at 1M); {full['stored']:,} stored",
                  flush=True)
            if n != max(SYNC_SESSIONS):
                continue
            cache = scratch / f"killed-{n}"
            ask(pipe, "reset")
            stored = killed_at_half(_python(SYNC, url, str(cache), "30d"), cache, n)
            ask(pipe, "reset")
            resumed = _run(SYNC, url, str(cache), "30d")
            again = ask(pipe, "stats").get("list", 0)
            print(f"  since=30d killed at {stored / n:.0%}: the next sync read {again:,} pages = "
                  f"{again / pages:.0%} of a full read (target <= 60 %); {resumed['stored']:,} stored",
                  flush=True)
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        print(f"  memory in N: {peaks[large]:.0f} MB at {large:,} against {peaks[small]:.0f} MB at "
              f"{small:,} ({peaks[large] / peaks[small] - 1:+.0%}; target within 10 %)")


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_dataset")
    parser.add_argument("--sessions", type=int, default=DATASET_SESSIONS)
    parser.add_argument("--skip-sync", action="store_true", help="parts 1 and 2 only")
    parser.add_argument("--only", choices=["dataset", "sync"],
                        help="only the dataset figures (parts 1 and 2), or only the sync figures (part 3)")
    args = parser.parse_args([] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.only == "sync":
            sync_figures(scratch)
            print(f"  (this process: peak RSS {peak_rss_bytes() / 2**20:.0f} MB)")
            return
        big = build_store(args.sessions)
        figures, _ = measure("dataset", big, scratch)
        print(f"  {args.sessions:,} sessions on the dataset (DuckDB): "
              f"{_times(figures, ['open', 'failure_rates', 'host_health', 'exit_status_over_time'])}; "
              f"every attribute × hour counted {figures['times']['unit_bucket_counts']:.2f} s; "
              f"peak RSS {figures['rss_mb']:.0f} MB (targets: failure_rates, host_health <= 10 s)",
              flush=True)
        ranked, _ = rank("dataset", big, scratch)
        print(f"  {args.sessions:,} sessions, rank_suspects(dataset) over every attribute: "
              f"{ranked['seconds']:.1f} s ({ranked['cpu']:.1f} s CPU), peak RSS {ranked['rss_mb']:.0f} MB, "
              f"{ranked['headlines']} headlines (targets: <= 60 s, <= 1.5 GB)", flush=True)
        path = build_store(COMPARE_SESSIONS)
        on_dataset, a = measure("dataset", path, scratch)
        on_frame, b = measure("frame", path, scratch)
        floor = _run(FLOOR, str(path))
        counted = on_dataset["times"]["unit_bucket_counts"]
        print(f"  {COMPARE_SESSIONS:,} sessions, dataset path: "
              f"{_times(on_dataset, ['failure_rates', 'host_health', 'unit_bucket_counts'])}; "
              f"peak RSS {on_dataset['rss_mb']:.0f} MB", flush=True)
        print(f"  {COMPARE_SESSIONS:,} sessions, frame path:   load {on_frame['times']['load']:.2f} s · "
              f"{_times(on_frame, ['failure_rates', 'host_health', 'unit_bucket_counts'])}; "
              f"peak RSS {on_frame['rss_mb']:.0f} MB; identical results: {same_results(a, b)}", flush=True)
        print(f"  floor, DuckDB alone counting every attribute × hour × failed: {floor['seconds']:.2f} s, "
              f"{floor['cells']:,} cells, peak RSS {floor['rss_mb']:.0f} MB; the dataset's counting "
              f"{counted / floor['seconds']:.1f}× its time, {on_dataset['rss_mb'] / floor['rss_mb']:.1f}× "
              f"its memory", flush=True)
        rank_ds, ranked_ds = rank("dataset", path, scratch)
        rank_frame, ranked_frame = rank("frame", path, scratch)
        import pandas as pd

        try:
            pd.testing.assert_frame_equal(ranked_ds, ranked_frame)
            identical = True
        except AssertionError:
            identical = False
        print(f"  {COMPARE_SESSIONS:,} sessions, rank_suspects: dataset {rank_ds['seconds']:.1f} s, "
              f"peak RSS {rank_ds['rss_mb']:.0f} MB; frame (after a {rank_frame['open']:.1f} s load) "
              f"{rank_frame['seconds']:.1f} s, peak RSS {rank_frame['rss_mb']:.0f} MB; identical: "
              f"{identical}; the dataset {rank_ds['seconds'] / floor['seconds']:.1f}× the floor's time "
              f"(target <= 2.5×), {rank_ds['rss_mb'] / floor['rss_mb']:.1f}× its memory", flush=True)
        if not args.skip_sync and args.only is None:
            sync_figures(scratch)
    print(f"  (this process: peak RSS {peak_rss_bytes() / 2**20:.0f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
