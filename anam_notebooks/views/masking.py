"""Reports for a wider audience: what a customer or an end user wrote is masked, while counts,
statuses, times, engines and product names stay, so every table, widget and figure still works.

`MASKING` is the one written list of what is masked and what is kept (the README and the
`redact` docstring of `setup_notebook` carry the same table, `masking_table()`). `Masking` is the
one gate: `RedactedClient` passes every record, transcript and frame it returns through it, and
readers that keep a cache (`fetch_sessions`, `fetch_transcripts`) read raw data through
`Masking.raw`, store it raw, and pass what they return through the same gate. So the cache
never holds masked data, and a redacted run never shows raw data, whatever the path.

Labels and persona names become `label-<8 hex>` / `persona-<8 hex>`, keyed by a secret drawn
once per process: the same value maps to the same stand-in within a report (grouping still
works), and a stand-in cannot be reversed by hashing guessed names. Free text becomes
`[REDACTED]`. Field names not listed as kept are masked: an unknown field is treated as text a
person wrote.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from ..api.client import AnamClient
from ..api.paging import Batch, Coverage
from ..api.source import Redaction, SessionSource, StopWhen, TranscriptResult, blocking_source
from .redact import REDACTED

__all__ = ["MASKING", "Masking", "RedactedClient", "masking_table"]

_KEY = secrets.token_bytes(16)

#: What a redacted run masks and keeps, field by field: (field, masked or kept, why).
MASKING: tuple[tuple[str, str, str], ...] = (
    ("`clientLabel` (`client_label`)", "masked: `label-<8 hex>`",
     "set by the customer's app; one stand-in per label"),
    ("`personaConfig.name`, `personaName` (`persona_name`)", "masked: `persona-<8 hex>`",
     "named by the customer"),
    ("`systemPrompt`, `personality`, `fillerPhrases`", "masked", "written by the customer"),
    ("knowledge and tools (names, descriptions) in `personaConfig`", "masked", "written by the customer"),
    ("other text in `personaConfig` (metadata, URLs, unknown keys)", "masked", "may hold the customer's words"),
    ("`type`, `id`, `modelName`, `format`, `languageCode`", "kept", "product settings (`llm_model`...)"),
    ("`ttsProvider`, `ttsProviderModelId`, `ttsProviderVoiceId`", "kept", "product names (`tts_provider`...)"),
    ("`avatarEngineKey`, `avatarVersion`", "kept", "product names (`avatar_version`)"),
    ("numbers and switches in `personaConfig`", "kept", "settings, no words"),
    ("`clientMetadata.userAgent`, `.sdkVersion`", "kept", "from the browser and SDK; parsed into columns"),
    ("other `clientMetadata` fields", "masked", "arbitrary metadata the customer's app sends"),
    ("transcript `messages[].message` (`text`)", "masked", "what the end user and the persona said"),
    ("transcript roles, timestamps, durations, interruptions", "kept", "timings (response latency)"),
    ("ids, times, `sessionLengthMs`, `exitStatus`", "kept", "counts, statuses and times"),
    ("`engineHost`, `engineProtocol`, `engineVersion`", "kept", "engines"),
    ("`apiKeyId`, `organizationId`", "kept", "identifiers, no words"),
    ("any other text field", "masked", "an unknown field may hold a person's words"),
    ("recordings", "refused", "a recording is the conversation itself"),
)

_SESSION_KEPT = frozenset({"id", "personaId", "startTime", "endTime", "sessionLengthMs", "exitStatus",
                           "engineHost", "engineProtocol", "engineVersion", "apiKeyId",
                           "organizationId", "createdAt", "updatedAt"})
_CONFIG_KEPT = frozenset({"id", "type", "modelName", "format", "ttsProvider", "ttsProviderModelId",
                          "ttsProviderVoiceId", "avatarEngineKey", "avatarVersion", "languageCode"})
_METADATA_KEPT = frozenset({"userAgent", "sdkVersion"})
_TRANSCRIPT_KEPT = frozenset({"sessionId", "startTime", "endTime", "durationMs", "totalMessages",
                              "transcriptsEnabled"})
_MESSAGE_KEPT = frozenset({"role", "timestamp", "speakingDurationSeconds", "wasInterrupted"})
_STAND_INS: dict[str, str] = {}   # raw label or persona name → its stand-in (for `Masking.text`)
_MADE: set[str] = set()           # every stand-in made, so masking twice changes nothing


def masking_table() -> str:
    """`MASKING` as a Markdown table (the README and the `redact` docstring carry this text)."""
    rows = ["| field | masked or kept | why |", "|---|---|---|"]
    rows += [f"| {field} | {verdict} | {why} |" for field, verdict, why in MASKING]
    return "\n".join(rows)


def _stand_in(kind: str, value: Any) -> Any:
    if not isinstance(value, str):
        return _text(value)
    if value in _MADE:
        return value
    digest = hmac.new(_KEY, f"{kind}\0{value}".encode("utf-8", "surrogatepass"), hashlib.blake2s)
    masked = f"{kind}-{digest.hexdigest()[:8]}"
    _MADE.add(masked)
    if value:
        _STAND_INS[value] = masked
    return masked


def mask_label(label: Any) -> Any:
    """A client label's stable, irreversible stand-in (`label-1a2b3c4d`); None stays None, any
    other non-text value has its text masked."""
    return _stand_in("label", label)


def mask_persona(name: Any) -> Any:
    """A persona name's stable, irreversible stand-in (`persona-1a2b3c4d`); None stays None."""
    return _stand_in("persona", name)


def _text(value: Any) -> Any:
    """Every string inside `value` replaced (empty ones stay empty); other values kept."""
    if isinstance(value, str):
        return REDACTED if value else value
    if isinstance(value, Mapping):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _keeping(value: Any, kept: frozenset[str]) -> Any:
    """Strings under a kept key stay; every other string (at any depth) is masked."""
    if isinstance(value, Mapping):
        return {k: (v if k in kept and not isinstance(v, (Mapping, list)) else _keeping(v, kept))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_keeping(v, kept) for v in value]
    return _text(value)


def mask_config(config: Any) -> Any:
    """A masked copy of a persona config: the name as a stand-in, product fields kept."""
    if not isinstance(config, Mapping):
        return _text(config)
    out = _keeping({k: v for k, v in config.items() if k != "name"}, _CONFIG_KEPT)
    if "name" in config:
        out["name"] = mask_persona(config["name"])
    return {k: out[k] for k in config}


def _masked(record: Any, kept: frozenset[str], special: Mapping[str, Callable[[Any], Any]]) -> Any:
    """A copy of a record: kept fields as they are, `special` ones masked their own way, the
    text of every other field masked."""
    if not isinstance(record, Mapping):
        return record
    return {k: (v if k in kept else special[k](v) if k in special else _text(v)) for k, v in record.items()}


_SESSION_SPECIAL: dict[str, Callable[[Any], Any]] = {
    "clientLabel": lambda v: mask_label(v),
    "personaConfig": lambda v: mask_config(v),
    "clientMetadata": lambda v: _keeping(v, _METADATA_KEPT),
}
_TRANSCRIPT_SPECIAL: dict[str, Callable[[Any], Any]] = {
    "personaName": lambda v: mask_persona(v),
    "messages": lambda v: [_keeping(m, _MESSAGE_KEPT) for m in v] if isinstance(v, list) else _text(v),
}


def mask_session(record: Any) -> Any:
    """A masked copy of one session record (see `MASKING`)."""
    return _masked(record, _SESSION_KEPT, _SESSION_SPECIAL)


def mask_transcript(transcript: Any) -> Any:
    """A masked copy of a transcript: every message's text replaced, roles and timings kept."""
    return _masked(transcript, _TRANSCRIPT_KEPT, _TRANSCRIPT_SPECIAL)


# Frame columns holding what a person wrote, and how each is masked, and the columns kept (a test
# checks every column of the contract is in one of the two: a new column needs a decision).
# Text columns in neither (added by a caller) are masked whole.
FRAME_MASKED: dict[str, Callable[[Any], Any]] = {"client_label": mask_label, "persona_name": mask_persona}
FRAME_KEPT = frozenset({
    "persona_id", "api_key_id", "organization_id", "start_time", "end_time", "created_at", "updated_at",
    "session_length_ms", "duration", "exit_status", "is_active", "stale_active", "engine_host",
    "engine_protocol", "engine_version", "engine_region", "engine_replicaset", "engine_pod", "persona_type",
    "llm_model", "tts_provider", "tts_model", "avatar_version", "avatar_key", "language_code",
    "zero_data_retention", "user_agent", "sdk_version", "browser", "os", "device_type"})
TURNS_MASKED = frozenset({"text"})
TURNS_KEPT = frozenset({"session_id", "turn_index", "role", "timestamp", "offset", "speaking_duration",
                        "interrupted", "response_gap"})


def _mapped(column: pd.Series, mask: Callable[[Any], Any]) -> pd.Series:
    values = column.dropna().unique()
    table = {v: mask(v) for v in values}
    mapped = column.astype(object).map(table)
    return mapped.astype(column.dtype if not isinstance(column.dtype, pd.CategoricalDtype) else "category")


def mask_sessions_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A masked copy of a sessions frame: labels and persona names as stand-ins; unknown text
    columns (outside the column contract) masked whole."""
    out = frame.copy()
    for column in out.columns:
        if column in FRAME_MASKED:
            out[column] = _mapped(out[column], FRAME_MASKED[column])
        elif column not in FRAME_KEPT and _is_text(out[column]):
            out[column] = _mapped(out[column], _text)
    return out


def mask_turns_frame(turns: pd.DataFrame) -> pd.DataFrame:
    """A masked copy of a turns frame: the text of every message replaced."""
    out = turns.copy()
    for column in out.columns:
        if column in TURNS_MASKED or (column not in TURNS_KEPT and _is_text(out[column])):
            out[column] = out[column].where(out[column].isna(), REDACTED).astype(out[column].dtype)
    if "persona_name" in out.attrs:
        out.attrs["persona_name"] = mask_persona(out.attrs["persona_name"])
    return out


def _is_text(column: pd.Series) -> bool:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)


def mask_message(text: str) -> str:
    """`text` with every label and persona name masked so far replaced by its stand-in (for
    messages, data notes and echoed searches)."""
    for raw in sorted(_STAND_INS, key=len, reverse=True):
        if raw in text:
            text = text.replace(raw, _STAND_INS[raw])
    return text


class Masking:
    """The one gate of a redacted run (a `Redaction`): records, frames and text masked alike.

    Parameters
    ----------
    raw : SessionSource
        The unmasked source underneath (caches read and store through it).
    """

    def __init__(self, raw: SessionSource) -> None:
        self._raw = raw

    @property
    def raw(self) -> SessionSource:
        """The unmasked source underneath."""
        return self._raw

    def session(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A masked copy of one session record."""
        return dict(mask_session(record))

    def transcript(self, transcript: Mapping[str, Any]) -> dict[str, Any]:
        """A masked copy of one transcript."""
        return dict(mask_transcript(transcript))

    def sessions_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A masked copy of a sessions frame."""
        return mask_sessions_frame(frame)

    def turns_frame(self, turns: pd.DataFrame) -> pd.DataFrame:
        """A masked copy of a turns frame."""
        return mask_turns_frame(turns)

    def text(self, value: str) -> str:
        """`value` with every label and persona name masked so far replaced by its stand-in."""
        return mask_message(value)


class RedactedClient:
    """A `SessionSource` whose records arrive masked (see `MASKING`), reading through another.

    Every method of the contract is written out (nothing is forwarded by name), and
    `redaction` tells cached readers to read raw through `redaction.raw` and mask what they
    return, so the shared cache only ever holds raw records.

    Parameters
    ----------
    client : SessionSource
        The client to read through (an `AnamClient`; a `RedactedClient` is unwrapped, never
        masked twice).

    Raises
    ------
    TypeError
        When `client` is not a `SessionSource` (the message names what it lacks).
    """

    def __init__(self, client: SessionSource) -> None:
        source = blocking_source(client)
        inner = source.redaction.raw if source.redaction is not None else source
        self._masking = Masking(inner)
        self.base_url: str = inner.base_url
        self.source: str = inner.source

    def __repr__(self) -> str:
        return f"RedactedClient({self._masking.raw!r})"

    @property
    def redaction(self) -> Redaction:
        """The masking applied to everything read, and the raw source underneath."""
        return self._masking

    @property
    def concurrency(self) -> int:
        """Requests in flight at most (the wrapped client's)."""
        return self._masking.raw.concurrency

    def get_session(self, session_id: Any) -> dict[str, Any]:
        return self._masking.session(self._masking.raw.get_session(session_id))

    def get_transcript(self, session_id: Any) -> dict[str, Any]:
        return self._masking.transcript(self._masking.raw.get_transcript(session_id))

    def get_recording_url(self, session_id: Any) -> str:
        """Recordings hold the conversation itself: not shown in a redacted report.

        Parameters
        ----------
        session_id : str or uuid.UUID
            The session (not read).

        Returns
        -------
        str
            Never: the call always raises.

        Raises
        ------
        PermissionError
            Always.
        """
        raise PermissionError("recordings are not shown in a redacted report (redact=True)")

    def list_sessions(self, page: int = 1, per_page: int = 100, search: str | None = None,
                      persona_id: Any = None, api_key_id: Any = None) -> dict[str, Any]:
        body = dict(self._masking.raw.list_sessions(page, per_page, search, persona_id, api_key_id))
        if isinstance(body.get("data"), list):
            body["data"] = [self._masking.session(r) if isinstance(r, Mapping) else r for r in body["data"]]
        return body

    def iter_sessions(self, *, search: str | None = None, persona_id: Any = None,
                      api_key_id: Any = None, per_page: int = 100, since: datetime | None = None,
                      stop: StopWhen | None = None) -> Iterator[dict[str, Any]]:
        records = self._masking.raw.iter_sessions(search=search, persona_id=persona_id,
                                                  api_key_id=api_key_id, per_page=per_page,
                                                  since=since, stop=stop)
        return (self._masking.session(r) for r in records)

    def iter_session_pages(self, *, search: str | None = None, persona_id: Any = None,
                           api_key_id: Any = None, per_page: int = 100, since: datetime | None = None,
                           stop: StopWhen | None = None, resume: Coverage | None = None) -> Iterator[Batch]:
        for batch in self._masking.raw.iter_session_pages(
                search=search, persona_id=persona_id, api_key_id=api_key_id, per_page=per_page,
                since=since, stop=stop, resume=resume):
            masked = Batch(self._masking.session(r) for r in batch)
            masked.span = batch.span
            yield masked

    def iter_transcripts(self, session_ids: Iterable[str]) -> Iterator[tuple[str, TranscriptResult]]:
        for sid, result in self._masking.raw.iter_transcripts(session_ids):
            yield sid, (self._masking.transcript(result) if isinstance(result, Mapping) else result)

    def close(self) -> None:
        self._masking.raw.close()


# The client's text documents the masked methods too (each returns what the wrapped client
# returns, masked as `MASKING` says).
for _name in ("get_session", "get_transcript", "list_sessions", "iter_sessions", "iter_session_pages",
              "iter_transcripts", "close"):
    getattr(RedactedClient, _name).__doc__ = getattr(AnamClient, _name).__doc__
