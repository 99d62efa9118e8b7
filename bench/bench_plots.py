"""Session timeline at 20,000 sessions: build time and figure JSON size against
plotly.express.timeline (one SVG bar per session) on the same simulator data."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px

from anam_notebooks import plots
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator import generate_fleet

SESSIONS = 20_000
TARGET_SECONDS = 2.0


def _timed(build):
    start = time.perf_counter()
    fig = build()
    built = time.perf_counter() - start
    start = time.perf_counter()
    size = len(fig.to_json())
    return built, time.perf_counter() - start, size


def _express(df: pd.DataFrame):
    """The obvious baseline: px.timeline with the same lanes, colours and hover fields."""
    data = df.reset_index()
    for column in ("start_time", "end_time"):
        data[column] = data[column].dt.tz_localize(None)
    data["end_time"] = data["end_time"].fillna(pd.Timestamp.now())
    data["exit_status"] = data["exit_status"].astype(object).fillna("ACTIVE")
    data["engine_pod"] = data["engine_pod"].astype(object).fillna("(missing)")
    data["duration"] = data["duration"].astype(str)  # plotly's JSON engine takes no Timedelta
    return px.timeline(data, x_start="start_time", x_end="end_time", y="engine_pod",
                       color="exit_status",
                       hover_data=["id", "client_label", "duration", "engine_version"])


def main() -> None:
    fleet = generate_fleet(seed=0, sessions=SESSIONS)
    df = sessions_frame(fleet.sessions)
    ours = _timed(lambda: plots.session_timeline(df))
    base = _timed(lambda: _express(df))
    print(f"session_timeline, {len(df):,} sessions")
    print(f"  ours (WebGL lines) : build {ours[0]:.2f}s, to_json {ours[1]:.2f}s, "
          f"JSON {ours[2] / 1e6:.2f} MB")
    print(f"  px.timeline (SVG)  : build {base[0]:.2f}s, to_json {base[1]:.2f}s, "
          f"JSON {base[2] / 1e6:.2f} MB")
    print(f"  build speed-up x{base[0] / ours[0]:.1f}, JSON size ratio {ours[2] / base[2]:.2f}; "
          f"target < {TARGET_SECONDS:.0f}s: {'met' if ours[0] < TARGET_SECONDS else 'MISSED'}")
    for name, build in (("exit_status_over_time", lambda: plots.exit_status_over_time(df)),
                        ("host_health", lambda: plots.host_health(df)),
                        ("duration_distribution", lambda: plots.duration_distribution(df))):
        built, _, size = _timed(build)
        print(f"  {name:<22}: build {built:.2f}s, JSON {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
