"""Reports for a wider audience: a client whose records arrive with transcript text, client
labels and system prompts masked, so every table, widget and figure built from them is masked
too, while counts, statuses, times and engines stay as they are.

Labels become `label-<8 hex>`, keyed by a secret drawn once per process: the same label maps to
the same mask within a report (grouping by label still works), and a mask cannot be reversed by
hashing guessed labels.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from .redact import REDACTED

_KEY = secrets.token_bytes(16)
_PROMPT = re.compile(r"prompt|instruction", re.IGNORECASE)


def mask_label(label: Any) -> Any:
    """A client label's stable, irreversible stand-in (`label-1a2b3c4d`); None stays None."""
    if label is None or not isinstance(label, str):
        return label
    digest = hmac.new(_KEY, label.encode("utf-8", "surrogatepass"), hashlib.blake2s).hexdigest()
    return f"label-{digest[:8]}"


def _mask_config(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: (REDACTED if _PROMPT.search(str(k)) and v is not None else _mask_config(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_config(v) for v in value]
    return value


def mask_session(record: Any) -> Any:
    """A copy of one session record with its client label and system prompts masked."""
    if not isinstance(record, Mapping):
        return record
    out = dict(record)
    if "clientLabel" in out:
        out["clientLabel"] = mask_label(out["clientLabel"])
    if "personaConfig" in out:
        out["personaConfig"] = _mask_config(out["personaConfig"])
    return out


def mask_transcript(transcript: Any) -> Any:
    """A copy of a transcript with every message's text replaced (roles and timings kept)."""
    if not isinstance(transcript, Mapping):
        return transcript
    out = dict(transcript)
    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = [({**m, "message": REDACTED} if isinstance(m, Mapping) and m.get("message")
                            is not None else m) for m in messages]
    return out


class RedactedClient:
    """Wraps an `AnamClient`: the same methods, with records masked on the way in.

    Parameters
    ----------
    client : AnamClient
        The client to read through.
    """

    redacted = True

    def __init__(self, client: Any) -> None:
        self._client = client
        self.source: str = getattr(client, "source", "")
        self.base_url: str = getattr(client, "base_url", "")

    def __repr__(self) -> str:
        return f"RedactedClient({self._client!r})"

    def get_session(self, session_id: Any) -> dict[str, Any]:
        """One session record, masked."""
        return mask_session(self._client.get_session(session_id))

    def get_transcript(self, session_id: Any) -> dict[str, Any]:
        """The session's transcript with every message's text masked."""
        return mask_transcript(self._client.get_transcript(session_id))

    def get_recording_url(self, session_id: Any) -> str:
        """Recordings hold the conversation itself: not shown in a redacted report."""
        raise PermissionError("recordings are not shown in a redacted report (redact=True)")

    def list_sessions(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One page of sessions, each masked."""
        page = dict(self._client.list_sessions(*args, **kwargs))
        if isinstance(page.get("data"), list):
            page["data"] = [mask_session(r) for r in page["data"]]
        return page

    def iter_sessions(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every session, each masked."""
        return (mask_session(r) for r in self._client.iter_sessions(**kwargs))

    def close(self) -> None:
        """Close the wrapped client."""
        self._client.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client, name)
