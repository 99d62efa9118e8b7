"""Browser, OS and device type from a user agent, parsed once per distinct agent with ua-parser.

A fleet has a handful of distinct user agents and millions of sessions, so each distinct agent
is parsed once and the results are mapped back through the categorical codes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from ua_parser import parse

from .fields import sorted_categorical

UA_COLUMNS = ("browser", "os", "device_type")
_DESKTOP_OS = {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Chrome OS", "FreeBSD", "Debian"}
_TABLETS = {"iPad", "Generic Tablet", "Kindle"}


def _named(family: str | None, major: str | None) -> str | None:
    if not family or family == "Other":
        return None
    return f"{family} {major}" if major else family


@lru_cache(maxsize=4096)
def parse_user_agent(agent: str) -> tuple[str | None, str | None, str | None]:
    """(browser, os, device_type) of one user agent; None for what cannot be told.

    `browser` and `os` are the family with its major version ("Chrome 131", "iOS 18");
    `device_type` is "mobile", "tablet", "desktop" or "bot".
    """
    result = parse(agent)
    ua, os_, device = result.user_agent, result.os, result.device
    browser = _named(ua.family, ua.major) if ua else None
    system = _named(os_.family, os_.major) if os_ else None
    family = device.family if device else None
    kind = None
    if family == "Spider":
        kind = "bot"
    elif family in _TABLETS or (os_ and os_.family == "Android" and "Mobile" not in agent):
        kind = "tablet"
    elif (family and family not in ("Other", "Mac")) or (os_ and os_.family in ("iOS", "Android")):
        kind = "mobile"
    elif family == "Mac" or (os_ and os_.family in _DESKTOP_OS):
        kind = "desktop"
    return browser, system, kind


def user_agent_parts(agents: pd.Categorical) -> dict[str, pd.Categorical]:
    """browser, os and device_type columns for a categorical of user agents (null stays null)."""
    parsed = [parse_user_agent(str(a)) for a in agents.categories]
    codes = np.asarray(agents.codes)
    parts: dict[str, pd.Categorical] = {}
    for index, column in enumerate(UA_COLUMNS):
        values = [p[index] for p in parsed]
        distinct = sorted({v for v in values if v is not None})
        position = {v: i for i, v in enumerate(distinct)}
        lookup = np.array([position[v] if v is not None else -1 for v in values] + [-1], dtype=np.int32)
        parts[column] = sorted_categorical(lookup[codes], distinct)
    return parts
