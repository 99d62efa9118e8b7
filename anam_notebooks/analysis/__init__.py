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
  a third of all traffic) is diluted by its healthy days, so each unit's failures are also
  scanned for the run of consecutive time buckets where they most exceed what the same hours
  predict (a scan statistic: Kulldorff's likelihood ratio picks the window). The window's own
  exact test is then multiplied by how many windows were searched (every run of up to a week
  of buckets: about 14,000 for a week of hours). That multiplication (a Bonferroni bound) is
  what keeps the scan honest: a unit looked at 14,000 ways gets 14,000 chances to look unlucky,
  and its p-value pays for each. A real outage survives it easily: a 4-hour outage at 45 % on a
  third of a week's 20,000 sessions gives window p-values of 1e-15 to 1e-23 after it, where
  the whole-week test gives only 0.02 to 0.0004; noise does not.
- **p_value**: the better of the two tests, doubled (Bonferroni again, for having looked twice).
- **q_value**: the p-value corrected for how many units were tested, across every unit of
  every attribute. Flagging everything with q < 0.05 means that, on average, at most 5 % of the
  flagged units are false alarms. Units overlap (a pod's sessions are also its replicaset's; a
  persona's are also its TTS provider's), so their tests are not independent; the correction is
  the Benjamini–Yekutieli form of Benjamini–Hochberg, which holds under any dependence. On 40
  quiet simulated fleets of 2,000 sessions (no incident) no unit reached q < 0.05 (the lowest
  q was 0.09), nor on 40 of 20,000 sessions (the lowest 0.31).

Minimum volume: a unit is only tested with at least `min_sessions` ended sessions (default 20)
and only flagged with at least `min_failures` failures (default 3), so one failure in two
sessions can never become a headline.

One cause, one headline (`flagged`; `explained_by` says who carries the rest). Causes are found
in passes. The strongest significant unit becomes a headline, narrowed to the unit inside it
that carries all of its excess (a replicaset whose excess is one pod's becomes that pod; a
region that is exactly one replicaset is that replicaset). Then every unit is tested again
comparing like with like on the headlines: a session of a failing SDK release is only compared
with other sessions of that release at the same time. A persona speaking only through the
failing TTS provider then no longer stands out, while a second, independent incident still
does; the passes repeat until the headlines settle, and a headline must still show an excess
on its sessions outside every other headline. Units that stood out only through a headline's
sessions name it in `explained_by`, and `summarize_suspects` says what each headline also
accounts for. Its first line answers "engine, provider or client?" in words.

`what_differs` is the other view of the same question: among the failing and the healthy
sessions of a window, each attribute value's share of each, ranked by the difference (with a
Fisher exact test per value, BY-corrected across all of them).
"""

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
