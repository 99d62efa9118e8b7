"""The simulator's own settings: the demo key it accepts and the fleet the demo serves."""

# The one key the bundled simulator accepts unless told otherwise (documented in README).
DEMO_API_KEY = "anam-demo-key"

# The demo's simulated fleet: a day of traffic, so the notebooks' default window ("the last 24
# hours") holds every rollout and planted incident of the simulator.
DEMO_FLEET = {"sessions": 20_000, "span": "24h", "seed": 0}
