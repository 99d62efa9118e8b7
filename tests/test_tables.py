"""Readable tables on hand-built frames: the formatting rules a report reader sees."""

from __future__ import annotations

import pandas as pd
import pytest

from anam_notebooks import show_table
from anam_notebooks.views.tables import (
    format_frame,
    format_percent,
    format_points,
    format_pvalue,
    format_ratio,
    meaningful_index,
)


def test_shares_p_values_ratios_and_points_read_as_people_write_them():
    assert format_percent(0.241252) == "24.1 %"
    assert format_percent(0.0052) == "0.52 %"
    assert format_percent(0) == "0.0 %" and format_percent(1) == "100.0 %"
    assert format_pvalue(1.323462e-78) == "1.3e-78"
    assert format_pvalue(0.0421) == "0.042" and format_pvalue(0.00042) == "4.2e-4"
    assert format_pvalue(0.0) == "< 1e-300"
    assert format_ratio(2.345) == "2.3×" and format_ratio(float("inf")) == "∞"
    assert format_points(0.0321) == "+3.2 pp" and format_points(-0.01) == "-1.0 pp"
    for fmt in (format_percent, format_pvalue, format_ratio, format_points):
        assert fmt(None) == "" and fmt(float("nan")) == "" and fmt(pd.NA) == ""


def _rates() -> pd.DataFrame:
    return pd.DataFrame({
        "unit": pd.array(["pod-a", None], dtype="string"),
        "sessions": [1177, 12],
        "rate": [0.241252, float("nan")],
        "q_value": [1.323462e-78, 0.5],
        "duration": pd.to_timedelta(["0 days 00:00:27.038", "0 days 01:02:03"]),
        "window_start": pd.to_datetime(["2026-04-20T09:00:00.123456Z", None], utc=True),
        "lift": [6.04, None],
    })


def test_a_rates_frame_becomes_readable_text():
    out = format_frame(_rates())
    assert list(out.columns) == ["unit", "sessions", "rate", "q_value", "duration",
                                 "window_start (UTC)", "lift"]
    assert out.iloc[0].tolist() == ["pod-a", "1,177", "24.1 %", "1.3e-78", "27.0s",
                                    "2026-04-20 09:00:00", "6.0×"]
    assert out.iloc[1].tolist() == ["", "12", "", "0.5", "1h 02m 03s", "", ""]   # blanks, not <NA>


def test_times_show_in_the_display_zone_named_once_in_the_header():
    out = format_frame(_rates(), tz="Europe/London")
    assert "window_start (Europe/London)" in out.columns
    assert out["window_start (Europe/London)"].iloc[0] == "2026-04-20 10:00:00"   # BST, to the second
    with pytest.raises(ValueError, match="tz='Mars/Olympus'"):
        format_frame(_rates(), tz="Mars/Olympus")


def test_a_default_index_is_left_out_and_a_meaningful_one_kept():
    frame = _rates()
    assert not meaningful_index(frame)
    html = show_table(frame)._repr_html_()
    assert "<th>0</th>" not in html and "<th>1</th>" not in html
    named = frame.set_index("unit")
    assert meaningful_index(named)
    assert "<th>pod-a</th>" in show_table(named)._repr_html_()
    assert "<NA>" not in html and "NaN" not in html and "NaT" not in html


def test_table_cells_and_headers_are_escaped():
    frame = pd.DataFrame({"<b>col</b>": ['<img src=x onerror="alert(1)">']})
    html = show_table(frame)._repr_html_()
    assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "&lt;b&gt;col&lt;/b&gt;" in html


def test_the_text_form_and_a_row_limit_that_says_so():
    frame = pd.DataFrame({"rate": [0.5] * 60})
    table = show_table(frame, max_rows=10)
    assert "showing 10 of 60 rows" in table._repr_html_()
    assert "50.0 %" in repr(table) and len(repr(table).splitlines()) == 11


def test_mixed_object_columns_format_value_by_value():
    frame = pd.DataFrame({"value": ["coach", pd.Timestamp("2026-04-20T09:00:00.5Z"),
                                    pd.Timedelta("27s"), None]}, index=["label", "start", "length", "end"])
    assert format_frame(frame)["value"].tolist() == ["coach", "2026-04-20 09:00:00 UTC", "27.0s", ""]


def test_a_latency_table_reads_in_seconds_and_percent_and_a_faster_group_is_no_finding():
    """05's p50/p90 table: seconds with their unit, rates as percentages, no bare 0 for a
    q-value, and a group answering faster than the rest shows "faster", not a q-value."""
    table = pd.DataFrame({"sessions": [143, 193], "p50": [1.8503, 0.9271], "shift": [0.933, -0.284],
                          "overlap_rate": [0.057, 0.06], "p_value": [0.0, 0.0], "q_value": [0.0, 3e-9]},
                         index=pd.Index(["v5.1.1", "v5.0.3"], name="engine_version"))
    shown = format_frame(table)
    assert shown.loc["v5.1.1"].tolist() == ["143", "1.85 s", "+0.93 s", "5.7 %", "< 1e-300", "< 1e-300"]
    assert shown.loc["v5.0.3", "shift"] == "-0.28 s"
    assert shown.loc["v5.0.3", "q_value"] == "faster" and shown.loc["v5.0.3", "p_value"] == "faster"
    assert "0.0" not in show_table(table).html
