"""Diagnosis: which pod, rollout, client, provider or persona fails more than it should, and when.

DataFrame in, DataFrame out; plots and widgets draw what these functions find.
Reading the numbers, for someone who is not a statistician:

- **rate**: the share of *ended* sessions that failed (active sessions have no outcome yet and
  are left out). Which exit statuses count as failures is `failures` (see `is_failure`).
- **Wilson interval** (`ci_low`, `ci_high`): the range of true failure rates that is consistent
  with the sessions seen, at 95 % confidence. 1 failure in 2 sessions gives 1 %–99 %: a rate on
  a handful of sessions says little, and the interval shows it.
- **unit, level, family**: `rank_suspects` treats every value of every attribute as a suspect
  unit: engine (pod, replicaset, version, region), client (SDK version, browser, OS and device
  type parsed from the user agent, client label, API key), provider (TTS provider and model,
  LLM model) and persona (persona, avatar version, language). `level` names the column,
  `family` which of those four it belongs to.
- **baseline**: what the *rest of the fleet* failed at during the same hours the unit was
  serving. Comparing at the same time matters: a bad hour for everyone makes every pod that was
  busy in it look bad against a whole-week average, but not against its neighbours that hour.
- **expected / lift**: failures the unit would have had at the baseline rate, and rate ÷
  baseline (2.0 means twice as many failures as its peers at the same time).
- **p_whole**: if the unit were no worse than its peers, the chance of seeing at least this many
  failures over the whole period anyway (an exact test, stratified by time). Small means "hard
  to explain by luck". It finds a unit that is a little worse all the time.
- **window** and **p_window**: a short outage on a big unit (a TTS provider down for 4 hours,
  half of all traffic) is diluted by its healthy days, so each unit's history is also scanned
  for its worst window (`analysis.scan`, run on per-hour counts from `analysis.counts`):
  1. *What the unit should fail each hour*: its own failure rate over the whole period, times
     how unusual that hour was for the *rest* of the fleet. The rest's hour-to-hour swings are
     mostly chance, so each hour's effect is shrunk toward "no effect" as far as chance explains
     it (empirical Bayes); hours in which the rest failed far beyond chance (more than 3
     standard errors: an outage elsewhere, or everywhere) are left out of the unit's scan. A
     unit that is most of the traffic keeps its power, because its own past is the comparison,
     not the small rest of the fleet.
  2. *The worst window*: for every window of a geometric grid (1, 2, 3, 4, 6, 8, 11, ... hours
     up to the whole period, slid along by half its length), Kulldorff's likelihood ratio of
     "one failure rate inside, another outside" against "the usual rate throughout". The best
     is refined hour by hour and reported.
  3. *How surprising*: the same statistic on 199 simulated histories of the unit, its failures
     dealt at random among its own sessions. p_window is the share of simulations scoring as
     high (ties broken at random); past their reach (fewer than ten as high), a Gumbel tail
     fitted to them (SaTScan's method). The window also has to fail more than the rest of
     the fleet in the same hours (an exact test, p < 0.05), so a change in the unit's own mix
     that its neighbours shared is not taken for an outage.
  Measured: on 400 simulated quiet units these p-values are uniform (Kolmogorov-Smirnov
  p = 0.45; 6 % below 0.05), and on ten quiet 8,000-session weeks likewise for every unit with
  20 failures or more. The issue's case, a TTS provider carrying 30–70 % of a week of 8,000
  sessions failing 40 % for 4 hours, is found first, q < 0.01, window within an hour, on
  19–20 of 20 fleets (the previous method, which multiplied each window's exact test by the
  14,000 windows searched and compared only with the rest of the fleet in the same hour: 4 of
  10). A 1-hour 60 % outage on a fifth of a 50,000-session week: found on 5 of 5.
- **p_whole**: if the unit were no worse than its peers, the chance of seeing at least this many
  failures over the whole period anyway (an exact test, stratified by time). Small means "hard
  to explain by luck". It finds a unit that is a little worse all the time.
- **p_value**: the better of the two tests, doubled (Bonferroni, for having looked twice).
- **fleet**: the whole fleet is scanned too (its own history, level "fleet", unit "all
  sessions"). When everyone fails at once, in at least two regions, versions and providers,
  and no single unit carries it, the first finding is the fleet's ("the whole fleet failed …
  every region, version and provider at once") and no unit is blamed for those hours.
- **excess_failures**, **customers**, **window_hours**: a finding's impact, where its evidence
  lies (inside the window when the window test carries it, else the whole period): failed
  sessions beyond what was expected there, and how many distinct customers (client label and
  API key pairs) those failed sessions belong to. The sentence says both ("about 19 more
  failed sessions than expected, 7 customers"). `explain_session` goes the other way, from a
  customer's session to the finding it falls in.
- **q_value**: the p-value corrected for how many units were tested, across every unit of
  every attribute. Flagging everything with q < 0.05 means that, on average, at most 5 % of the
  flagged units are false alarms. Units overlap (a pod's sessions are also its replicaset's; a
  persona's are also its TTS provider's), so their tests are not independent; the correction is
  the Benjamini–Yekutieli form of Benjamini–Hochberg, which holds under any dependence. On 40
  quiet simulated fleets of 2,000 sessions and 40 of 8,000 no unit reached q < 0.05.

Minimum volume: a unit is only tested with at least `min_sessions` ended sessions (default 20)
and only flagged with at least `min_failures` failures (default 3), so one failure in two
sessions can never become a headline.

One cause, one headline (`flagged`; `explained_by` says who carries the rest). Causes are found
in passes. The strongest significant unit becomes a headline, narrowed to the unit inside it
that carries all of its excess (a replicaset whose excess is one pod's becomes that pod; a
region that is exactly one replicaset is that replicaset; a version that was all one
provider's traffic in its worst hours becomes that provider), or handed to an overlapping unit
that carries its excess instead. Then every unit is tested again on the sessions outside the
headlines found (each headline on the sessions outside the others). A persona speaking only through the
failing TTS provider then no longer stands out, while a second, independent incident still
does; the passes repeat until the headlines settle, and a headline must still show an excess
on its sessions outside every other headline. Units that stood out only through a headline's
sessions name it in `explained_by`, and `summarize_suspects` says what each headline also
accounts for. Its first line answers "engine, provider or client?" in words.

`what_differs` is the other view of the same question: among the failing and the healthy
sessions of a window, each attribute value's share of each, ranked by the difference (with a
Fisher exact test per value, BY-corrected across all of them).
"""

from .counts import FailureCounts, LevelCounts, SessionQueries, count_sessions
from .differences import what_differs
from .exemplars import EXEMPLAR_COLUMNS, exemplars
from .explain import explain_session
from .failures import DEFAULT_FAILURES, FailureSpec, is_failure
from .findings import DEFAULT_Q, headline_window, latency_findings, suspect_findings, suspect_headline
from .latency import response_latency, summarize_latency
from .neighbours import (
    NeighbourVerdict,
    neighbour_verdict,
    neighbour_window,
    session_summary,
    verdict_findings,
)
from .rates import failure_rates
from .rollouts import latest_rollout, rollouts, split_time
from .shifts import exit_status_shift
from .suspects import DEFAULT_LEVELS, MIN_FAILURES, MIN_SESSIONS, rank_suspects
from .wording import summarize_suspects

__all__ = [
    "DEFAULT_FAILURES",
    "DEFAULT_LEVELS",
    "DEFAULT_Q",
    "EXEMPLAR_COLUMNS",
    "FailureCounts",
    "LevelCounts",
    "SessionQueries",
    "count_sessions",
    "MIN_FAILURES",
    "MIN_SESSIONS",
    "FailureSpec",
    "NeighbourVerdict",
    "exemplars",
    "exit_status_shift",
    "explain_session",
    "failure_rates",
    "headline_window",
    "is_failure",
    "latency_findings",
    "latest_rollout",
    "neighbour_verdict",
    "neighbour_window",
    "rank_suspects",
    "rollouts",
    "session_summary",
    "split_time",
    "suspect_findings",
    "suspect_headline",
    "response_latency",
    "summarize_latency",
    "summarize_suspects",
    "verdict_findings",
    "what_differs",
]
