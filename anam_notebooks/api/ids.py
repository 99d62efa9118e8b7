"""Session-id and filter validation, done before any request so typos never reach the API."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .errors import InvalidSessionId

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_BARE = re.compile(rf"\{{?({UUID_PATTERN}|[0-9a-fA-F]{{32}})\}}?")
_URN = re.compile(rf"urn:uuid:({UUID_PATTERN})", re.IGNORECASE)
_IN_TEXT = re.compile(rf"(?<![0-9a-fA-F-])({UUID_PATTERN})(?![0-9a-fA-F-])")
_MAX_PER_PAGE = 100


def _canonical(text: str) -> str | None:
    """The lower-case hyphenated form of a UUID written alone (braces, urn or hyphenless ok)."""
    match = _BARE.fullmatch(text) or _URN.fullmatch(text)
    return str(uuid.UUID(match.group(1))) if match else None


def normalize_session_id(value: Any) -> str:
    """A session id in canonical form; a pasted URL holding exactly one UUID is accepted too."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidSessionId(value)
    text = value.strip()
    canonical = _canonical(text)
    if canonical:
        return canonical
    if "/" in text:
        found = {m.lower() for m in _IN_TEXT.findall(text)}
        if len(found) == 1:
            return found.pop()
    raise InvalidSessionId(value)


def normalize_uuid_filter(name: str, value: Any) -> str | None:
    """A UUID-valued list filter (persona_id, api_key_id) in canonical form, or None."""
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    canonical = _canonical(value.strip()) if isinstance(value, str) else None
    if canonical is None:
        raise ValueError(f"{name}={value!r} is not a UUID: expected e.g. "
                         "'8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a6978', or None for no filter")
    return canonical


def check_search(value: Any) -> str | None:
    """The free-text search filter, passed through verbatim."""
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"search={value!r} must be a string (a session id or client label) or None")


def check_page(page: Any) -> int:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"page={page!r} is not valid: pages are numbered from 1")
    return page


def check_per_page(per_page: Any) -> int:
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= _MAX_PER_PAGE:
        raise ValueError(f"per_page={per_page!r} is not valid: the API accepts 1..{_MAX_PER_PAGE}")
    return per_page
