"""fetch_transcripts speed: 5,000 transcripts from the simulator on loopback (real uvicorn, its own
process) at 50 ms per request, against the floor ceil(N / concurrency) x latency: the time N
requests take when exactly `concurrency` are always in flight and nothing else costs anything.

Also shown: the same call again with the cache (no request at all), and building the turns frame
plus the latency table from those transcripts.

Target: >= 70 % of the floor.
"""

from __future__ import annotations

import math
import tempfile
import time
from datetime import UTC, datetime

from anam_notebooks import AnamClient, analysis, fetch_transcripts, sessions_frame
from anam_notebooks.simulator import DEMO_API_KEY, create_app, generate_fleet

from . import server_process

TRANSCRIPTS = 5000
SESSIONS = 6500          # about 15 % keep no transcript (zero data retention)
LATENCY = 0.05
CONCURRENCY = 16
END = datetime(2026, 4, 20, 12, tzinfo=UTC)
FLEET = {"seed": 3, "sessions": SESSIONS, "span": "3d", "end": END}


def _app():
    """The simulator this benchmark reads from (built in the server's own process)."""
    return create_app(generate_fleet(**FLEET), latency=LATENCY)


def main() -> None:
    sessions = sessions_frame(generate_fleet(**FLEET).sessions)   # the same fleet the server holds
    with server_process(_app) as url, tempfile.TemporaryDirectory() as cache:
        client = AnamClient(api_key=DEMO_API_KEY, base_url=url, concurrency=CONCURRENCY)
        began = time.perf_counter()
        turns = fetch_transcripts(client, sessions, sample=TRANSCRIPTS, cache=cache, progress=False)
        took = time.perf_counter() - began
        began = time.perf_counter()
        again = fetch_transcripts(client, sessions, sample=TRANSCRIPTS, cache=cache, progress=False)
        cached = time.perf_counter() - began
        client.close()
    asked = turns.attrs["requests"]
    floor = math.ceil(asked / CONCURRENCY) * LATENCY
    began = time.perf_counter()
    analysis.response_latency(turns, sessions, by="engine_version")
    table = time.perf_counter() - began
    print(f"{asked:,} transcripts ({len(turns):,} turns) at {LATENCY * 1000:.0f} ms, concurrency "
          f"{CONCURRENCY}: {took:.2f} s; floor ceil(N/c) x latency = {floor:.2f} s -> "
          f"{floor / took:.0%} of the floor (target >= 70 %)")
    print(f"second call from the cache: {cached:.2f} s, {again.attrs['requests']} requests "
          "(the sampled sessions still active: only ended sessions are cached)")
    print(f"response_latency over {len(turns):,} turns: {table:.2f} s")
