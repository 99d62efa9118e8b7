"""How often the diagnosis finds a planted cause: detection rate and window error of
`rank_suspects`, side by side with the method it replaced (`_reference_suspects`, kept here as
the reference) and a naive baseline (a chi-square test per unit and hour, Bonferroni over all).

A cell plants one cause on a quiet simulated fleet: a unit of one kind (pod, replicaset,
version, SDK, TTS provider, LLM, persona, or the whole fleet) carrying about a share of the
traffic fails `multiple` times the fleet's 4 % for a duration. Detected means: the first row
names that unit (or one holding the same sessions, over the week or inside the window: the
whole fleet when the unit served every session then), flagged at q < 0.01 (the naive baseline:
Bonferroni p < 0.01), with its window within an hour of the planted one at both ends (for a
week-long cause, any window). The window error is the median of |start error| + |end error|
over the detected seeds, in hours. Beside them: how many seeds' windows held at least 15 failed
sessions and each method's detection rate among those seeds alone (the issue's bar is on the
window's failures, which vary from seed to seed: a cause at night holds few), and "window
located": how often the window that best fits the planted unit's own hours lies within an hour of
the planted one (`located`): what the data allow a method to get right. Two more say where
detection is lost, each against the bar the top row of the ranking must pass for q < 0.01
when it is the only real cause (`top_row_bar`): "window known", how often the planted window's
own exact test passes it (a method told the unit and its window: whether the sessions show the
cause at all, `known_window_p`), and "unit's scan", how often the planted unit's own calibrated
scan does (the unit named, its window searched for as the ranking does, `unit_scan_p`). The
first minus the second is the price of searching for the window; the second minus "found" is
what the ranking loses among the other units.

A cause shorter than the week is placed at a random hour inside the unit's active span (where
it serves traffic: a version between its rollout and its retirement), at least 6 hours from
either end of the week. A rise of the whole fleet all week is left out of the grid: with
nothing to compare it with it is no incident, and no method can name it.

    python -m bench.bench_diagnosis --kinds provider,pod --durations 1,4 --shares 0.2 \\
        --multiples 5,10 --sizes 20000 --seeds 20

`make bench` runs a small default grid (`main()`); the README table comes from the command line
given there.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from scipy import stats

from anam_notebooks import analysis
from anam_notebooks.analysis.scan import scan_level
from anam_notebooks.analysis.suspects import MIN_SESSIONS
from anam_notebooks.data.sessions import sessions_frame
from anam_notebooks.simulator.fleet import generate_fleet

from . import _reference_suspects

END = datetime(2026, 4, 20, 12, tzinfo=UTC)
HOUR = pd.Timedelta("1h")
BASELINE = 0.04
KINDS = {"pod": "engine_pod", "replicaset": "engine_replicaset", "version": "engine_version",
         "sdk": "sdk_version", "provider": "tts_provider", "llm": "llm_model",
         "persona": "persona_name", "fleet": None}
WEEK = 168
# The bar: a window holding at least this many failed sessions (counted per seed too).
ENOUGH = 15


@dataclass
class Cell:
    kind: str
    hours: int
    share: float
    multiple: float
    size: int


def _fleet(seed: int, size: int) -> pd.DataFrame:
    return sessions_frame(generate_fleet(seed=seed, sessions=size, span="7d", end=END,
                                         incidents=False).sessions)


def _plant(df: pd.DataFrame, cell: Cell, seed: int) -> tuple[pd.DataFrame, set[tuple[str, str]],
                                                              pd.Timestamp, pd.Timestamp, float]:
    """A copy of `df` with the cell's cause planted; the names that count as found, the
    window, and the unit's actual share of the traffic."""
    rng = np.random.default_rng([seed, cell.hours, int(cell.share * 100), int(cell.multiple)])
    column = KINDS[cell.kind]
    if column is None:
        unit = pd.Series(True, index=df.index)
        names = {("fleet", "all sessions")}
    else:
        shares = df[column].value_counts(normalize=True)
        value = str((shares - cell.share).abs().idxmin())
        unit = (df[column] == value).fillna(False)
        names = {(column, value)}
        # Another attribute holding the same sessions names the same cause.
        for other in analysis.DEFAULT_LEVELS:
            if other != column and other in df.columns:
                values = df.loc[unit, other].dropna().unique()
                if len(values) == 1 and (df[other] == values[0]).sum() <= 1.05 * unit.sum():
                    names.add((other, str(values[0])))
    origin = df["start_time"].min().ceil("1h")
    if cell.hours >= WEEK:
        start, end = df["start_time"].min().floor("1h"), df["start_time"].max().ceil("1h")
    else:
        # Inside the unit's active span (a version between its rollout and its retirement), so
        # the window holds the unit's traffic: a cause where a unit serves nobody is no incident.
        times = df.loc[unit, "start_time"]
        lo = max(6, int((times.min().ceil("1h") - origin) / HOUR))
        hi = min(WEEK - cell.hours - 6, int((times.max().floor("1h") - origin) / HOUR) - cell.hours)
        start = origin + pd.Timedelta(hours=int(rng.integers(lo, hi + 1) if hi >= lo else lo))
        end = start + pd.Timedelta(hours=cell.hours)
    # In the window, a unit holding the same sessions as the planted one (the whole fleet when
    # a version served every session then, a replicaset when it was the version's only one)
    # names the same cause: the data cannot tell them apart.
    during = (df["start_time"] >= start) & (df["start_time"] < end)
    if column is None and cell.hours < WEEK:   # the fleet: a unit serving every session then
        for other in analysis.DEFAULT_LEVELS:
            if other in df.columns:
                top = df.loc[during, other].value_counts()
                if len(top) and top.iloc[0] >= 0.95 * during.sum():
                    names.add((other, str(top.index[0])))
    elif cell.hours < WEEK and (unit & during).sum():
        inside = int((unit & during).sum())
        if inside >= 0.95 * during.sum():
            names.add(("fleet", "all sessions"))
        for other in analysis.DEFAULT_LEVELS:
            if other != column and other in df.columns:
                top = df.loc[unit & during, other].value_counts()
                if len(top) and top.iloc[0] >= 0.95 * inside and (
                        (df[other] == top.index[0]) & during).sum() <= 1.05 * inside:
                    names.add((other, str(top.index[0])))
    planted = df.copy()
    hit = unit & (planted["start_time"] >= start) & (planted["start_time"] < end) & ~planted["is_active"]
    rate = min(0.95, BASELINE * cell.multiple)
    fail = hit & (rng.random(len(planted)) < (rate - BASELINE) / (1 - BASELINE))
    planted.loc[fail, "exit_status"] = "ERROR"
    return planted, names, start, end, float(unit.mean())


def _judge(first: pd.Series | None, names: set[tuple[str, str]], start: pd.Timestamp,
           end: pd.Timestamp, week: bool) -> tuple[bool, float]:
    if first is None or (str(first["level"]), str(first["unit"])) not in names:
        return False, np.nan
    if pd.isna(first["window_start"]):
        return week, np.nan
    error = (abs(first["window_start"] - start) + abs(first["window_end"] - end)) / HOUR
    close = abs(first["window_start"] - start) <= HOUR and abs(first["window_end"] - end) <= HOUR
    return bool(close or week), float(error)


def _hourly(df: pd.DataFrame, unit: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Ended sessions and failures of `unit` per hour of the fleet's week."""
    ended = df[~df["is_active"] & unit]
    origin = df["start_time"].min().floor("1h")
    bucket = ((ended["start_time"] - origin) // HOUR).to_numpy()
    size = int((df["start_time"].max() - origin) // HOUR) + 1
    n = np.bincount(bucket, minlength=size)
    x = np.bincount(bucket, weights=(ended["exit_status"] == "ERROR").to_numpy(), minlength=size)
    return n, x.astype(np.int64)


def located(df: pd.DataFrame, unit: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> bool:
    """What the data allow: whether the window that best fits the planted unit's own hours
    (every window of whole hours scored by Kulldorff's Bernoulli likelihood ratio, its
    sessions inside against outside, knowing the unit and that it has one window) lies within
    an hour of the planted one at both ends. Where chance left an hour at the edge of an
    outage looking healthy, or an hour beside it looking broken, no method working from the
    sessions can be expected to place the window better."""
    origin = df["start_time"].min().floor("1h")
    n, x = _hourly(df, unit)
    size = len(n)
    cn, cx = np.concatenate([[0], np.cumsum(n)]), np.concatenate([[0], np.cumsum(x)])
    a, b = np.triu_indices(size + 1, k=1)   # every window [a, b) of whole hours
    keep = b - a < size
    a, b = a[keep], b[keep]
    n_in, x_in = cn[b] - cn[a], cx[b] - cx[a]
    n_out, x_out = cn[-1] - n_in, cx[-1] - x_in

    def ll(k: np.ndarray, m: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(m > 0, k / np.where(m > 0, m, 1), 0.0)
            return (np.where(k > 0, k * np.log(np.where(r > 0, r, 1)), 0.0)
                    + np.where(m - k > 0, (m - k) * np.log(np.where(r < 1, 1 - r, 1)), 0.0))

    with np.errstate(divide="ignore", invalid="ignore"):
        higher = x_in / np.where(n_in > 0, n_in, 1) > x_out / np.where(n_out > 0, n_out, 1)
    score = np.where(higher & (n_in > 0), ll(x_in, n_in) + ll(x_out, n_out), -np.inf)
    if not np.isfinite(score).any():
        return False
    k = int(np.argmax(score))
    return bool(abs(origin + int(a[k]) * HOUR - start) <= HOUR and abs(origin + int(b[k]) * HOUR - end) <= HOUR)


def known_window_p(df: pd.DataFrame, unit: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """What the data allow a method told the window: the one-sided exact test that the planted
    unit's failures fell inside the planted window more often than its share of the unit's
    sessions there predicts (binomial, given the unit's failures: the scan's own conditioning),
    with no search over windows."""
    ended = df[~df["is_active"] & unit]
    inside = ((ended["start_time"] >= start) & (ended["start_time"] < end)).to_numpy()
    fail = (ended["exit_status"] == "ERROR").to_numpy()
    total = int(fail.sum())
    if not total or not inside.any():
        return 1.0
    return float(stats.binom.sf(int(fail[inside].sum()) - 1, total, inside.mean()))


def unit_scan_p(df: pd.DataFrame, unit: pd.Series, column: str | None, value: str) -> float:
    """The window p-value of the planted unit's own scan (`analysis.scan.scan_level`, the
    ranking's calibrated search over every window, fleet hour effects allowed for), the unit
    named: what searching for the window costs, before the ranking looks at any other unit."""
    n, x = _hourly(df, unit)
    if column is None:   # the whole fleet: its own history, as the ranking scans it
        return float(scan_level(n[None, :], x[None, :], n, x, level="fleet", labels=["fleet"],
                                adjust=False).p_value[0])
    fleet_n, fleet_x = _hourly(df, pd.Series(True, index=df.index))
    return float(scan_level(n[None, :], x[None, :], fleet_n, fleet_x, level=column,
                            labels=[value]).p_value[0])


def top_row_bar(df: pd.DataFrame, q: float = 0.01) -> float:
    """The p-value the top row of the ranking needs for a q-value below `q` when it is the only
    real cause: q ÷ (m·H_m), m the units tested (every unit of every level with at least
    `MIN_SESSIONS` ended sessions and not holding every session, and the whole fleet) and H_m
    = 1 + 1/2 + … + 1/m, Benjamini–Yekutieli's allowance for any dependence."""
    ended = df[~df["is_active"]]
    m = 1
    for level in [c for c in analysis.DEFAULT_LEVELS if c in ended.columns]:
        sizes = ended[level].value_counts()
        m += int(((sizes >= MIN_SESSIONS) & (sizes < len(ended))).sum())
    return q / (m * float(np.sum(1.0 / np.arange(1, m + 1))))


def _ranked_first(ranked: pd.DataFrame) -> pd.Series | None:
    heads = ranked[ranked["flagged"].astype(bool) & (ranked["q_value"] < 0.01)]
    return heads.iloc[0] if len(heads) else None


def naive(df: pd.DataFrame) -> pd.Series | None:
    """Per unit of every level and per hour, a one-sided 2×2 chi-square of the unit against the
    rest of the fleet that hour; Bonferroni over every (unit, hour) tested. The most
    significant below 0.01 is the finding (its hour the window)."""
    ended = df[~df["is_active"]]
    origin = ended["start_time"].min().floor("1h")
    bucket = ((ended["start_time"] - origin) // HOUR).to_numpy()
    fail = (ended["exit_status"] == "ERROR").to_numpy()
    size = int(bucket.max()) + 1
    fleet_n = np.bincount(bucket, minlength=size)
    fleet_x = np.bincount(bucket, weights=fail, minlength=size)
    best: tuple[float, tuple[str, str, pd.Timestamp] | None] = (np.inf, None)
    tests = 0
    for level in [c for c in analysis.DEFAULT_LEVELS if c in ended.columns]:
        codes, names = pd.factorize(ended[level])
        ok = codes >= 0
        units = len(names)
        key = codes[ok] * size + bucket[ok]
        n = np.bincount(key, minlength=units * size).reshape(units, size).astype(float)
        x = np.bincount(key, weights=fail[ok], minlength=units * size).reshape(units, size)
        rest_n, rest_x = fleet_n - n, fleet_x - x
        total, fails = n + rest_n, x + rest_x
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = n * fails / total
            var = n * rest_n * fails * (total - fails) / (total ** 2 * np.maximum(total - 1, 1))
            z = (x - expected) / np.sqrt(var)
        valid = (n > 0) & (rest_n > 0) & (var > 0)
        tests += int(valid.sum())
        z = np.where(valid, z, -np.inf)
        u, b = np.unravel_index(int(np.argmax(z)), z.shape)
        p = float(stats.norm.sf(z[u, b]))
        if p < best[0]:
            best = (p, (level, str(names[u]), origin + b * HOUR))
    if best[1] is None or best[0] * tests >= 0.01:
        return None
    level, unit, at = best[1]
    return pd.Series({"level": level, "unit": unit, "window_start": at, "window_end": at + HOUR})


METHODS = {
    "new": lambda df: _ranked_first(analysis.rank_suspects(df)),
    "reference": lambda df: _ranked_first(_reference_suspects.rank_suspects(df)),
    "naive": naive,
}


def run(cells: list[Cell], seeds: int, methods: list[str]) -> pd.DataFrame:
    rows = []
    fleets: dict[tuple[int, int], pd.DataFrame] = {}
    for cell in cells:
        found: dict[str, list[bool]] = {m: [] for m in methods}
        errors: dict[str, list[float]] = {m: [] for m in methods}
        shares, failures, cpu = [], [], {m: 0.0 for m in methods}
        allowed: list[bool] = []
        known: list[bool] = []
        scanned: list[bool] = []
        for seed in range(seeds):
            if (seed, cell.size) not in fleets:
                fleets[seed, cell.size] = _fleet(seed, cell.size)
            df, names, start, end, share = _plant(fleets[seed, cell.size], cell, seed)
            shares.append(share)
            inside = (df["start_time"] >= start) & (df["start_time"] < end)
            unit_col = KINDS[cell.kind]
            on = inside if unit_col is None else inside & df[unit_col].astype("string").isin(
                [u for lv, u in names if lv == unit_col]).fillna(False)
            failures.append(int((df.loc[on, "exit_status"] == "ERROR").sum()))
            if cell.hours < WEEK:
                unit = (pd.Series(True, index=df.index) if unit_col is None else
                        df[unit_col].astype("string").isin([u for lv, u in names if lv == unit_col]).fillna(False))
                allowed.append(located(df, unit, start, end))
                bar = top_row_bar(df)
                known.append(known_window_p(df, unit, start, end) < bar)
                value = next((u for lv, u in names if lv == unit_col), "")
                scanned.append(unit_scan_p(df, unit, unit_col, value) < bar)
            for method in methods:
                began = time.process_time()
                first = METHODS[method](df)
                cpu[method] += time.process_time() - began
                ok, error = _judge(first, names, start, end, cell.hours >= WEEK)
                found[method].append(ok)
                if ok and not np.isnan(error):
                    errors[method].append(error)
        row = {"kind": cell.kind, "hours": "week" if cell.hours >= WEEK else cell.hours,
               "share": cell.share, "actual share": round(float(np.mean(shares)), 2),
               "multiple": cell.multiple, "sessions": cell.size, "seeds": seeds,
               "window failures": int(np.median(failures)),
               "seeds >= 15": int(np.sum(np.array(failures) >= ENOUGH)),
               "window located": f"{np.mean(allowed):.0%}" if allowed else "-",
               "window known": f"{np.mean(known):.0%}" if known else "-",
               "unit's scan": f"{np.mean(scanned):.0%}" if scanned else "-"}
        enough = np.array(failures) >= ENOUGH
        for method in methods:
            row[f"{method} found"] = f"{np.mean(found[method]):.0%}"
            row[f"{method} found >= 15"] = (f"{np.mean(np.array(found[method])[enough]):.0%}"
                                            if enough.any() else "-")
            row[f"{method} error h"] = (round(float(np.median(errors[method])), 1)
                                        if errors[method] else np.nan)
            row[f"{method} cpu s"] = round(cpu[method] / seeds, 2)
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


def _numbers(text: str, kind: type = float) -> list:
    return [kind(v) for v in text.split(",") if v]


def parse(argv: list[str] | None = None) -> tuple[list[Cell], int, list[str], str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--durations", default="1,4,24,168", help="hours; 168 = all week")
    parser.add_argument("--shares", default="0.05,0.2,0.5")
    parser.add_argument("--multiples", default="3,5,10")
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--methods", default="new,reference,naive",
                        help="comma-separated; empty for the planted fleets' columns alone")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"--kinds {unknown} unknown; valid: {', '.join(KINDS)}")
    cells = []
    for size in _numbers(args.sizes, int):
        for kind in kinds:
            shares = [1.0] if kind == "fleet" else _numbers(args.shares)
            for hours in _numbers(args.durations, int):
                if kind == "fleet" and hours >= WEEK:
                    continue   # the whole fleet all week has no reference: not an incident
                for share in shares:
                    for multiple in _numbers(args.multiples):
                        cells.append(Cell(kind, hours, share, multiple, size))
    return cells, args.seeds, [m for m in args.methods.split(",") if m], args.csv


def main(argv: list[str] | None = None) -> None:
    """`make bench`'s small grid: every kind, a 4-hour and a 1-hour cause at 20 % of the traffic
    failing 5× as often, 20,000 sessions, 5 seeds (the README's table used 20 seeds)."""
    if argv is None:
        argv = ["--durations", "1,4", "--shares", "0.2", "--multiples", "5", "--sizes", "20000",
                "--seeds", "5"]
    cells, seeds, methods, csv = parse(argv)
    table = run(cells, seeds, methods)
    if csv:
        table.to_csv(csv, index=False)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
