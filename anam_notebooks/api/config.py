"""Where the API lives and which key to use: explicit arguments first, then the environment."""

from __future__ import annotations

import os

DEFAULT_BASE_URL = "https://api.anam.ai"
API_KEY_ENV = "ANAM_API_KEY"
API_URL_ENV = "ANAM_API_URL"
__version__ = "0.1.0"


def base_url_from_env(base_url: str | None = None) -> str:
    url = base_url or os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL
    return url.rstrip("/")


def api_key_from_env(api_key: str | None = None) -> str | None:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    key = key.strip() if key else None
    return key or None
