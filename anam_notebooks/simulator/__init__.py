"""A faithful, deterministic simulator of the Anam sessions API, for demos and tests.

`generate_fleet` builds production-like sessions: regional gateways (eu, us, ap), engine
replicasets rolled out across versions v5.0.3 → v5.1.0 → v5.1.1 with old pods drained
gradually, diurnal traffic, log-normal lengths, an open set of exit statuses, active
sessions at the head, and odd records (null or malformed engine hosts, extra or missing
fields, mixed timestamp offsets). `create_app` serves it with the API's endpoints and status
codes, plus knobs for latency, faults, rate limits and live traffic (drift).

Planted incidents (`incidents=True`, listed in `Fleet.incidents`):

1. kind "pod": one pod of the freshest replicaset in region eu ends about 40 % of its
   sessions with ERROR for a 2-4 hour window shortly after the rollout, while reconnecting
   clients pile onto it (a few per cent of the fleet's sessions, so it shows at any size).
2. kind "replicaset": the v5.1.0 replicaset in region us errors about 2.5 times the
   baseline rate over its whole life, a subtler signal spread across all its pods.
3. kind "client": the newest client SDK release (3.6.0, about 15 % of sessions) ends about
   20 % of its sessions with ERROR on every pod, all the time: a client regression.
4. kind "provider": TTS provider CARTESIA (about 30 % of sessions, through the personas that
   speak with it) fails about 35 % of its sessions for 4 hours: an upstream outage.

`incidents` may also name a subset of kinds, e.g. `incidents={"client"}`, so each can be
planted on its own; `incidents={"fleet"}` plants a fleet-wide outage instead (every session
fails about half the time for 40 minutes, whatever its region, version, client or provider).

3. a latency regression (`Fleet.latency_regressions`, not an exit-status incident): persona
   answers on the newest engine version start about 0.9 s later after the user stops
   speaking; `plant_latency_regression` plants one on any engine version or LLM model.

With `incidents=False` ERROR is equally likely everywhere (the baseline, 4 %), so a
statistical search should find nothing. Other exit statuses are never affected.
"""

from .app import Simulator, create_app
from .fleet import Fleet, generate_fleet
from .incidents import Incident
from .latency import LatencyRegression
from .latency_scenario import plant_latency_regression
from .markers import MARKER_PREFIX, plant_marker_text
from .server import demo_client, running_server
from .settings import DEMO_API_KEY, DEMO_FLEET

__all__ = ["DEMO_API_KEY", "DEMO_FLEET", "MARKER_PREFIX", "Fleet", "Incident", "LatencyRegression", "Simulator",
           "create_app", "demo_client", "generate_fleet", "plant_latency_regression", "plant_marker_text",
           "running_server"]
