"""Plotly figures for sessions frames (the public `anam_notebooks.plots` namespace).

Frames in, `plotly.graph_objects.Figure` out; see `anam_notebooks.views.plots` for each figure.
"""

from .views.plots import (
    duration_distribution,
    exit_status_over_time,
    host_health,
    latency_over_time,
    response_gap_distribution,
    session_detail,
    session_timeline,
)

__all__ = ["duration_distribution", "exit_status_over_time", "host_health", "latency_over_time",
           "response_gap_distribution", "session_detail", "session_timeline"]
