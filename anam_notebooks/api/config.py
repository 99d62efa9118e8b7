"""Where the API lives and which key to use: explicit arguments first, then the environment."""

from __future__ import annotations

import os
import re

DEFAULT_BASE_URL = "https://api.anam.ai"
API_KEY_ENV = "ANAM_API_KEY"
API_URL_ENV = "ANAM_API_URL"
__version__ = "0.1.0"


def base_url_from_env(base_url: str | None = None) -> str:
    """The base URL to use, any `user:password@` in it masked: whatever shows it (a report's
    source line) cannot show a password, and the client refuses it as carrying credentials."""
    url = base_url or os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL
    return without_credentials(url).rstrip("/")


def without_credentials(text: str) -> str:
    """A URL as it may be shown: any `user:password@` before the host masked."""
    return re.sub(r"(//)[^/?#@]*@", r"\1****@", text)


def api_key_from_env(api_key: str | None = None) -> str | None:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    key = key.strip() if key else None
    return key or None
