"""Static figures: PNGs of a notebook's figures from one long-lived browser (`StaticImages`)
against plotly's `to_image`, which starts a browser for every call (kaleido 1.x), on the same
figures. Needs the system's Chromium; prints a note and returns without it."""

from __future__ import annotations

import time

import plotly.io as pio

from anam_notebooks import plots
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator import generate_fleet
from anam_notebooks.views.static import StaticImages, find_browser

FIGURES = 6


def main() -> None:
    if find_browser() is None:
        print("no Chromium found (apt-get install chromium): skipped")
        return
    df = sessions_frame(generate_fleet(seed=0, sessions=3000, span="24h").sessions)
    figures = [plots.host_health(df).to_dict(), plots.exit_status_over_time(df).to_dict(),
               plots.duration_distribution(df).to_dict()] * (FIGURES // 3)
    images = StaticImages()
    start = time.perf_counter()
    for figure in figures:
        images.png(figure)
    ours = time.perf_counter() - start
    images.close()
    start = time.perf_counter()
    for figure in figures:
        layout = figure.get("layout") or {}
        pio.to_image(figure, format="png", width=layout.get("width") or 1000, height=layout.get("height") or 500)
    base = time.perf_counter() - start
    print(f"{len(figures)} figures to PNG")
    print(f"  one browser for all (StaticImages) : {ours:.1f}s ({ours / len(figures):.2f}s a figure)")
    print(f"  a browser per call (pio.to_image)  : {base:.1f}s ({base / len(figures):.2f}s a figure)")
    print(f"  ratio                              : {base / ours:.1f}x faster")
