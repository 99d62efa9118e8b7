"""Diagnosis: which hosts, rollouts or regions fail more than they should, and when.

DataFrame in, DataFrame out; plots and widgets draw what these functions find.
Reading the numbers, for someone who is not a statistician:

- **rate**: the share of *ended* sessions that failed (active sessions have no outcome yet and
  are left out). Which exit statuses count as failures is `failures` (see `is_failure`).
- **Wilson interval** (`ci_low`, `ci_high`): the range of true failure rates that is consistent
  with the sessions seen, at 95 % confidence. 1 failure in 2 sessions gives 1 %–99 %: a rate on
  a handful of sessions says little, and the interval shows it.
- **baseline**: what the *rest of the fleet* failed at during the same hours the unit was
  serving. Comparing at the same time matters: a bad hour for everyone makes every pod that was
  busy in it look bad against a whole-week average, but not against its neighbours that hour.
- **expected / lift**: failures the unit would have had at the baseline rate, and rate ÷
  baseline (2.0 means twice as many failures as its peers at the same time).
- **p_value**: if the unit were no worse than its peers, the chance of seeing at least this many
  failures anyway (an exact test, stratified by time bucket). Small means "hard to explain by
  luck". On its own it is misleading when dozens of units are checked, because some will be
  unlucky; hence
- **q_value**: the p-value corrected for how many units were tested, across every unit at every
  level. Flagging everything with q < 0.05 means that, on average, at most 5 % of the flagged
  units are false alarms. Units are nested (a pod's sessions are also its replicaset's, its
  version's and its region's), so their tests are not independent; the correction is the
  Benjamini–Yekutieli form of Benjamini–Hochberg, which holds under any dependence. Measured on
  quiet simulated fleets (no incident), plain Benjamini–Hochberg raised some false alarm in 6.7 %
  of fleets, this form in under 1 %, while finding the planted incidents just as often.
- **window**: the stretch of time where the unit's failures most exceed what its peers predict
  (the contiguous run of time buckets with the largest summed excess) — usually the incident.

Minimum volume: a unit is only tested with at least `min_sessions` ended sessions (default 20)
and only flagged with at least `min_failures` failures (default 3), so one failure in two
sessions can never become a headline.

Levels are reconciled so that one cause gives one headline (`explained_by` says who carries it):
a unit whose excess disappears once its worst significant sub-unit is removed (a replicaset
with one broken pod) is *explained by* that sub-unit; a unit that does not stand out from its
own siblings (a pod tested against the rest of its replicaset) is *explained by* its parent,
when the parent is itself significant. `flagged` marks the remaining headlines.
"""

from .exemplars import EXEMPLAR_COLUMNS, exemplars
from .failures import DEFAULT_FAILURES, FailureSpec, is_failure
from .findings import DEFAULT_Q, latency_findings, suspect_findings
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
    "MIN_FAILURES",
    "MIN_SESSIONS",
    "FailureSpec",
    "NeighbourVerdict",
    "exemplars",
    "exit_status_shift",
    "failure_rates",
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
    "response_latency",
    "summarize_latency",
    "summarize_suspects",
    "verdict_findings",
]
