"""Where the API lives and which key to use: explicit arguments first, then the environment."""

from __future__ import annotations

import os

DEFAULT_BASE_URL = "https://api.anam.ai"
API_KEY_ENV = "ANAM_API_KEY"
API_URL_ENV = "ANAM_API_URL"
# The one key the bundled simulator accepts unless told otherwise (documented in README).
DEMO_API_KEY = "anam-demo-key"


def base_url_from_env(base_url: str | None = None) -> str:
    url = base_url or os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL
    return url.rstrip("/")


def api_key_from_env(api_key: str | None = None) -> str | None:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    key = key.strip() if key else None
    return key or None

# The demo's simulated fleet: a day of traffic, so the notebooks' default window ("the last 24
# hours") holds every rollout and planted incident of the simulator.
DEMO_FLEET = {"sessions": 20_000, "span": "24h", "seed": 0}
