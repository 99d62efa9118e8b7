"""`response_latency`: how long users wait for the persona's answer, per group, and which group
is slower than the rest.

Reading the numbers, for someone who is not a statistician:

- **response gap**: seconds from the moment the user stopped speaking to the moment the persona
  started answering (see `turns_frame`). A negative gap means the persona started while the
  user was still talking (overlap, barge-in); those are kept in the percentiles and also
  counted on their own (`overlaps`, `overlap_rate`).
- **p50 / p90**: half of the answers in the group came within `p50` seconds, nine in ten
  within `p90`: the numbers voice platforms report. `p50_low`–`p50_high` is a 95 % interval
  for the p50, found by resampling whole *sessions* (a session bootstrap), so a handful of
  long, slow sessions cannot make it look more precise than it is.
- **shift**: the group's p50 minus the p50 of every other session's answers: "sessions on
  v5.1.1 answer 0.9 s slower at the median".
- **interruption_rate**: the share of the persona's messages the user talked over.
- **p_value**: is the group slower or faster than the rest by more than luck explains? The
  answers of one session are not independent of each other: one user on a bad network, or one
  busy engine, makes all of that session's answers slow together. Counting answers as if they
  were independent would treat one slow session of 40 answers as 40 pieces of evidence, and
  flag groups that are not different at all. So the test works on **sessions**: each session
  is reduced to its median gap, and the group's session medians are compared with those of
  every other session by a rank test (Mann-Whitney), which asks whether a random session of
  the group tends to have a longer median than a random session of the rest, and does not
  assume the gaps follow any particular curve.
- **q_value**: the p-value corrected for how many groups were compared (Benjamini–Yekutieli,
  which stays valid although "one group against the rest" comparisons share sessions). q <
  0.05 means: of all groups flagged at that level, on average at most 5 % are false alarms.
  Groups with fewer than `min_sessions` sessions carrying a gap are described but not tested.

The comparison is plain, not matched in time: a group that only served at peak hours competes
with quieter hours of the rest. Check the p50-over-time plot before blaming a rollout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..data.checks import check_columns, check_count, check_frame
from .stats import q_values

MIN_SESSIONS = 10
BOOTSTRAP = 400

_LATENCY_COLUMNS = {
    "sessions": "int64", "turns": "int64", "overlaps": "int64", "overlap_rate": "float64",
    "p50": "float64", "p50_low": "float64", "p50_high": "float64", "p90": "float64",
    "rest_p50": "float64", "shift": "float64",
    "persona_messages": "int64", "interruptions": "int64", "interruption_rate": "float64",
    "p_value": "float64", "q_value": "float64",
}


def response_latency(turns: pd.DataFrame, sessions: pd.DataFrame, by: str = "engine_version", *,
                     min_sessions: int = MIN_SESSIONS, bootstrap: int = BOOTSTRAP, seed: int = 0
                     ) -> pd.DataFrame:
    """Response gap per group of `by`: p50 (with a session-bootstrap interval), p90, overlaps,
    interruptions, and a session-level test of the group against the rest.

    Parameters
    ----------
    turns
        A turns frame from `fetch_transcripts` (session_id, role, interrupted, response_gap).
    sessions
        The sessions frame the transcripts came from (indexed by session id), holding `by`.
    by
        Any session attribute column: engine_version, llm_model, tts_provider, engine_pod ...
        Missing values form a group of their own.
    min_sessions
        Groups with fewer sessions carrying a gap get no p/q value.
    bootstrap
        Session resamples for the p50 interval (0: no interval).
    seed
        Seeds the bootstrap, so the same frames give the same table.

    Returns
    -------
    pandas.DataFrame
        One row per group (index named `by`), most significant first: sessions, turns,
        overlaps, overlap_rate, p50, p50_low, p50_high, p90, rest_p50, shift, persona_messages,
        interruptions, interruption_rate, p_value, q_value (all times in seconds; read them
        with the module docstring). `attrs` holds by, sessions, turns, overlaps, and
        unmatched_sessions (turns whose session is not in `sessions`, left out).

    Raises
    ------
    TypeError
        When `turns` or `sessions` is not a DataFrame.
    ValueError
        When a needed column is missing or `by`, `min_sessions`, `bootstrap` is not valid.
    """
    check_frame(turns, ["session_id", "role", "interrupted", "response_gap"])
    check_frame(sessions, [])
    if not isinstance(by, str):
        raise ValueError(f"by={by!r} is not valid: name one session column, e.g. by='llm_model'")
    check_columns(sessions, by, "by")
    min_sessions = check_count(min_sessions, "min_sessions")
    bootstrap = check_count(bootstrap, "bootstrap")
    seed = check_count(seed, "seed")

    labels = sessions[by][~sessions.index.duplicated()]
    sid = turns["session_id"].astype(object).to_numpy()
    known = pd.Index(labels.index.astype(str)).get_indexer(pd.Index(sid, dtype=object).astype(str))
    matched = known >= 0
    group_of = pd.Series(labels.astype(object).to_numpy(), dtype=object).reindex(known).to_numpy()
    group_of = np.asarray(np.where(pd.isna(group_of), None, group_of), dtype=object)
    role = turns["role"].astype(object).map(lambda r: r.strip().lower() if isinstance(r, str) else None)
    persona = (role == "persona").to_numpy(dtype=bool) & matched
    gap = turns["response_gap"].to_numpy(dtype=float, na_value=np.nan)
    answered = ~np.isnan(gap) & matched
    interrupted = turns["interrupted"].astype("boolean")

    names = _group_order(labels, np.concatenate([group_of[answered], group_of[persona]]))
    code = np.full(len(sid), -1, dtype=np.int64)
    for number, name in enumerate(names):
        code[_is(group_of, name) & matched] = number

    answer_code, answer_session, all_gaps = code[answered], sid[answered], gap[answered]
    medians = pd.DataFrame({"code": answer_code, "session": answer_session, "gap": all_gaps}
                           ).groupby(["code", "session"], sort=False)["gap"].median()
    session_code = medians.index.get_level_values("code").to_numpy(dtype=np.int64)
    session_median = medians.to_numpy(dtype=float)
    said_code = code[persona]
    said_known = interrupted[persona].notna().to_numpy()
    said_yes = interrupted[persona].fillna(False).to_numpy(dtype=bool)

    rng = np.random.default_rng(seed)
    rows = []
    for number in range(len(names)):
        inside = answer_code == number
        values, rest = all_gaps[inside], all_gaps[~inside]
        in_sessions = session_code == number
        n_sessions = int(in_sessions.sum())
        low, high = _session_bootstrap(values, answer_session[inside], bootstrap, rng)
        p50 = float(np.median(values)) if len(values) else np.nan
        rest_p50 = float(np.median(rest)) if len(rest) else np.nan
        p_value = np.nan
        others = session_median[~in_sessions]
        if n_sessions >= min_sessions and len(others) >= min_sessions:
            p_value = float(stats.mannwhitneyu(session_median[in_sessions], others,
                                               alternative="two-sided").pvalue)
        spoke = said_code == number
        known_n, yes_n = int(said_known[spoke].sum()), int(said_yes[spoke].sum())
        rows.append({
            "sessions": n_sessions, "turns": len(values), "overlaps": int((values < 0).sum()),
            "overlap_rate": float((values < 0).mean()) if len(values) else np.nan,
            "p50": p50, "p50_low": low, "p50_high": high,
            "p90": float(np.quantile(values, 0.9)) if len(values) else np.nan,
            "rest_p50": rest_p50, "shift": p50 - rest_p50,
            "persona_messages": known_n, "interruptions": yes_n,
            "interruption_rate": yes_n / known_n if known_n else np.nan,
            "p_value": p_value,
        })
    table = pd.DataFrame(rows, columns=[c for c in _LATENCY_COLUMNS if c != "q_value"])
    table["q_value"] = q_values(table["p_value"].to_numpy(dtype=float), method="by") if len(table) else []
    table = table.astype(_LATENCY_COLUMNS)
    table.index = pd.Index(names, dtype=object, name=by)
    table = table.iloc[np.lexsort((-table["shift"].fillna(-np.inf).to_numpy(),
                                   table["p_value"].fillna(np.inf).to_numpy()))]
    table.attrs.update(by=by, sessions=int(len(medians)), turns=int(answered.sum()),
                       overlaps=int((all_gaps < 0).sum()),
                       unmatched_sessions=int(pd.Series(sid[~matched]).nunique()))
    return table


def summarize_latency(table: pd.DataFrame, q: float = 0.01, slower_only: bool = True) -> str:
    """The findings of `response_latency` in words.

    One sentence per group answering slower (or, with `slower_only=False`, also faster) than the
    rest at q < `q`, else one sentence saying none does. When one group is slow, the others look
    faster than a "rest" that includes it: `slower_only` keeps the headline on the slow one.

    Parameters
    ----------
    table
        The frame `response_latency` returned.
    q
        Report groups whose q-value is below this (0 < q <= 1).
    slower_only
        Leave out groups that answer faster than the rest.

    Returns
    -------
    str
        The sentences, one per line.

    Raises
    ------
    ValueError
        When `table` lacks the latency columns or `q` is out of range.
    """
    check_frame(table, ["sessions", "turns", "shift", "p50", "q_value"])
    if not 0 < q <= 1:
        raise ValueError(f"q={q!r} must be between 0 and 1, e.g. 0.01")
    by = table.attrs.get("by", table.index.name or "group")
    heads = table[(table["q_value"] < q) & ((table["shift"] > 0) | (not slower_only))]
    if heads.empty:
        tested = int(table["q_value"].notna().sum())
        way = "slower" if slower_only else "slower or faster"
        return (f"No {by} answers {way} than the rest (q < {q:g}; {tested} group(s) "
                f"tested, {table.attrs.get('turns', int(table['turns'].sum())):,} answers in "
                f"{table.attrs.get('sessions', int(table['sessions'].sum())):,} sessions).")
    lines = []
    for name, row in heads.iterrows():
        way = "slower" if row["shift"] > 0 else "faster"
        lines.append(f"Sessions on {by} {name} answer {abs(row['shift']):.1f} s {way} at the median than "
                     f"the rest (p50 {row['p50']:.2f} s, 95 % interval {row['p50_low']:.2f}–"
                     f"{row['p50_high']:.2f} s, vs {row['rest_p50']:.2f} s; p90 {row['p90']:.2f} s), "
                     f"{int(row['turns']):,} answers in {int(row['sessions']):,} sessions, "
                     f"q = {row['q_value']:.2g}.")
    return "\n".join(lines)


def _is(values: np.ndarray, name: object) -> np.ndarray:
    """values == name, where None (a missing group value) equals None."""
    if name is None:
        return np.array([v is None for v in values], dtype=bool)
    return np.asarray(values == name, dtype=bool)


def _group_order(labels: pd.Series, seen: np.ndarray) -> list[object]:
    """Groups that occur, in the column's category order (or sorted), a missing group last."""
    present = set(seen.tolist())
    if isinstance(labels.dtype, pd.CategoricalDtype):
        order = [c for c in labels.cat.categories if c in present]
    else:
        order = sorted((v for v in present if v is not None), key=str)
    return order + ([None] if None in present else [])


def _session_bootstrap(values: np.ndarray, session: np.ndarray, draws: int, rng: np.random.Generator
                       ) -> tuple[float, float]:
    """95 % interval of the median of `values`, resampling whole sessions with replacement."""
    if draws == 0 or len(values) == 0:
        return np.nan, np.nan
    order = np.argsort(values, kind="stable")
    x = values[order]
    codes, _ = pd.factorize(pd.Series(session[order], dtype=object))
    count = int(codes.max()) + 1
    if count < 2:
        return np.nan, np.nan
    medians = np.empty(draws)
    block = max(1, 2_000_000 // max(len(x), 1))
    for first in range(0, draws, block):
        n = min(block, draws - first)
        weights = rng.multinomial(count, np.full(count, 1.0 / count), size=n)[:, codes]
        cumulative = np.cumsum(weights, axis=1)
        half = cumulative[:, -1:] / 2.0
        medians[first:first + n] = x[np.argmax(cumulative >= half, axis=1)]
    low, high = np.quantile(medians, [0.025, 0.975])
    return float(low), float(high)
