"""Secrets never reach the reader: which names look secret, and a redacted copy of a config."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
_SECRET_WORDS = frozenset({"secret", "secrets", "token", "tokens", "password", "passwd", "pwd",
                           "credential", "credentials", "encrypted", "apikey", "passphrase"})


def is_secret_name(key: object) -> bool:
    """A config key that names a secret: any secret word in it, or a name ending in key/keys."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", words) if t]
    return bool(tokens) and (bool(_SECRET_WORDS.intersection(tokens)) or tokens[-1] in ("key", "keys"))


def redact(value: Any) -> Any:
    """A copy of a persona config with every secret-looking field replaced by `[REDACTED]`.

    Parameters
    ----------
    value : dict, list or any value
        A persona config (or any JSON-like value); nested objects and lists are walked.

    Returns
    -------
    Any
        The same shape, with the values of secret-looking keys (token, password, api_key,
        ``*_key``...) replaced; the input is not changed.
    """
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret_name(k) and v is not None else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
