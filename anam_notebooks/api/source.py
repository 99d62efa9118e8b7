"""What a client is: the contract every session source fulfils, written down as types.

`SessionSource` lists every method and attribute the rest of the package uses from a client
(`fetch_sessions`, `fetch_transcripts`, the store, `SessionLookup`, `SessionExplorer`, the
notebooks). `AnamClient` and `RedactedClient` implement it explicitly; a wrapper that forgets a
method is rejected by mypy at the call site, and at run time by `check_source` with a message
naming what is missing, instead of silently forwarding to whatever it wraps.
`AsyncSessionSource` is the same contract with coroutines and async iterators
(`AsyncAnamClient`).

A source that masks what it returns says so through `redaction` (a `Redaction`): readers that
keep a cache read raw records through `redaction.raw`, store them raw, and pass what they return
through the redaction's masking, so a cache never holds masked data and a masked reader is
never served raw data.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack, runtime_checkable

from .paging import Batch, Coverage

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AsyncSessionSource", "Redaction", "SessionSource", "TranscriptResult", "blocking_source",
           "check_source"]

Record = dict[str, Any]
StopWhen = Callable[[Record], bool]
#: What `iter_transcripts` yields for one session: its transcript, or the error that reading it
#: raised (`NotFoundError` for none kept, `InvalidSessionId`, `AnamAPIError`, `AnamConnectionError`).
TranscriptResult = Record | Exception


class SessionFilters(TypedDict, total=False):
    """The keyword arguments every client's `iter_sessions` and `iter_session_pages` take."""

    search: str | None
    persona_id: Any
    api_key_id: Any
    per_page: int
    since: datetime | None
    stop: StopWhen | None


@runtime_checkable
class Redaction(Protocol):
    """How a redacting source masks what it reads: one gate for records, frames and text.

    Attributes
    ----------
    raw : SessionSource
        The unmasked source underneath; caches read and store through it, never through the
        masking source.
    """

    @property
    def raw(self) -> SessionSource: ...

    def session(self, record: Mapping[str, Any]) -> Record:
        """A masked copy of one session record."""
        ...

    def transcript(self, transcript: Mapping[str, Any]) -> Record:
        """A masked copy of one transcript."""
        ...

    def sessions_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A masked copy of a sessions frame (the column contract)."""
        ...

    def turns_frame(self, turns: pd.DataFrame) -> pd.DataFrame:
        """A masked copy of a turns frame (`fetch_transcripts`)."""
        ...

    def text(self, value: str) -> str:
        """What to show instead of text a reader typed or a record held (e.g. a label searched for)."""
        ...


class SourceFacts(Protocol):
    """What every source says about itself (see `SessionSource`)."""

    base_url: str
    source: str

    @property
    def concurrency(self) -> int: ...

    @property
    def redaction(self) -> Redaction | None: ...


@runtime_checkable
class SessionSource(SourceFacts, Protocol):
    """Every method and attribute the package uses from a blocking client.

    Attributes
    ----------
    base_url : str
        The API's base URL (part of a cache's key).
    source : str
        Where the data comes from, as a report states it (the base URL, or "simulator").
    concurrency : int
        Requests in flight at most.
    redaction : Redaction or None
        None when records come as the API sent them; otherwise the masking every reader applies.
    """

    def get_session(self, session_id: Any) -> Record:
        """One session record, as the API sent it (see `AnamClient.get_session`)."""
        ...

    def get_transcript(self, session_id: Any) -> Record:
        """One session's transcript (see `AnamClient.get_transcript`)."""
        ...

    def get_recording_url(self, session_id: Any) -> str:
        """A presigned download URL of the recording (see `AnamClient.get_recording_url`)."""
        ...

    def list_sessions(self, page: int = 1, per_page: int = 100, search: str | None = None,
                      persona_id: Any = None, api_key_id: Any = None) -> Record:
        """One page of sessions (see `AnamClient.list_sessions`)."""
        ...

    def iter_sessions(self, **filters: Unpack[SessionFilters]) -> Iterator[Record]:
        """Every session of every page, each id once (see `AnamClient.iter_sessions`)."""
        ...

    def iter_session_pages(self, *, resume: Coverage | None = None,
                           **filters: Unpack[SessionFilters]) -> Iterator[Batch]:
        """One `Batch` of new records per page read (see `AnamClient.iter_session_pages`)."""
        ...

    def iter_transcripts(self, session_ids: Iterable[str]) -> Iterator[tuple[str, TranscriptResult]]:
        """Many transcripts read concurrently, ``(session_id, transcript or error)`` as each
        arrives, an error yielded rather than raised (see `AnamClient.iter_transcripts`)."""
        ...

    def close(self) -> None:
        """Release the connections (see `AnamClient.close`)."""
        ...


@runtime_checkable
class AsyncSessionSource(SourceFacts, Protocol):
    """`SessionSource` for async code: the same methods as coroutines / async iterators."""

    async def get_session(self, session_id: Any) -> Record:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    async def get_transcript(self, session_id: Any) -> Record:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    async def get_recording_url(self, session_id: Any) -> str:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    async def list_sessions(self, page: int = 1, per_page: int = 100, search: str | None = None,
                            persona_id: Any = None, api_key_id: Any = None) -> Record:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    def iter_sessions(self, **filters: Unpack[SessionFilters]) -> AsyncIterator[Record]:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    def iter_session_pages(self, *, resume: Coverage | None = None,
                           **filters: Unpack[SessionFilters]) -> AsyncIterator[Batch]:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    def iter_transcripts(self, session_ids: Iterable[str]) -> AsyncIterator[tuple[str, TranscriptResult]]:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...

    async def aclose(self) -> None:
        """As in `SessionSource` (awaited, or iterated with ``async for``)."""
        ...


_MEMBERS = ("base_url", "source", "concurrency", "redaction", "get_session", "get_transcript",
            "get_recording_url", "list_sessions", "iter_sessions", "iter_session_pages",
            "iter_transcripts")
_MISSING = object()


def _has(obj: object, name: str) -> bool:
    """Defined by the object or its class, not conjured by a `__getattr__` that forwards."""
    return inspect.getattr_static(obj, name, _MISSING) is not _MISSING


def check_source(client: SessionSource | AsyncSessionSource, name: str = "client", *,
                 allow_async: bool = False) -> SessionSource | AsyncSessionSource:
    """`client` itself when it implements the session-source contract; else a TypeError naming
    what it lacks. A member only reachable through `__getattr__` counts as missing: a wrapper
    writes out every member, so nothing reaches the wrapped client unmasked by accident.

    Parameters
    ----------
    client : SessionSource or AsyncSessionSource
        What a caller passed as a client: typed as the contract, checked at run time too,
        since a notebook passes whatever it holds.
    name : str
        The argument's name, for the message.
    allow_async : bool
        Also accept an `AsyncSessionSource` (e.g. `AsyncAnamClient`).

    Returns
    -------
    SessionSource or AsyncSessionSource
        The same object.

    Raises
    ------
    TypeError
        When `client` lacks a member of the contract (each missing name is listed).
    """
    missing = [m for m in _MEMBERS if not _has(client, m)]
    closers = ("close", "aclose") if allow_async else ("close",)
    if not any(_has(client, c) for c in closers):
        missing.append(" or ".join(closers))
    if not missing and (isinstance(client, SessionSource) or
                        (allow_async and isinstance(client, AsyncSessionSource))):
        return client
    kinds = "a SessionSource or an AsyncSessionSource" if allow_async else "a SessionSource"
    raise TypeError(f"{name}={type(client).__name__} object is not {kinds} (like AnamClient or "
                    f"RedactedClient): it does not define {', '.join(missing) or 'its members with the right kinds'}"
                    " (every member must be written out; forwarding through __getattr__ does not count)")


def blocking_source(client: SessionSource | AsyncSessionSource, name: str = "client") -> SessionSource:
    """`check_source` for code that calls the client's methods directly (no async client).

    Parameters
    ----------
    client, name
        As for `check_source`.

    Returns
    -------
    SessionSource
        The same object.

    Raises
    ------
    TypeError
        When `client` is not a blocking `SessionSource` (the message names what it lacks).
    """
    source = check_source(client, name)
    assert isinstance(source, SessionSource)
    return source
