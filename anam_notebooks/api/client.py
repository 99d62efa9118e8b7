"""Clients for the Anam sessions API: `AsyncAnamClient` (the core), `AnamClient` (sync facade
usable anywhere a notebook runs) and `connect()` (real API with a key, else the simulator).

Resources are thin methods over one request path (`_http.HttpCore`); listing is an iterator
(`_paging`) that reads every page exactly once even while new sessions arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import paging as _paging
from .config import API_KEY_ENV, api_key_from_env, base_url_from_env
from .errors import AnamAPIError, AnamError, ConfigurationError
from .http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HttpCore,
    check_base_url,
    check_max_response_bytes,
    make_timeout,
)
from .ids import (
    check_page,
    check_per_page,
    check_search,
    normalize_session_id,
    normalize_uuid_filter,
)
from .retry import Backoff
from .runner import RUNNER
from .source import Redaction, TranscriptResult

__all__ = ["AnamClient", "AsyncAnamClient", "Backoff"]

logger = logging.getLogger("anam_notebooks")

Record = dict[str, Any]
StopWhen = Callable[[Record], bool]
T = TypeVar("T")

SESSIONS_PATH = "/v1/sessions"


class AsyncAnamClient:
    """Async client for the Anam sessions API; every method is a coroutine except
    `iter_sessions`, which returns an async iterator (`async for s in client.iter_sessions()`).

    The key comes from `api_key` or ANAM_API_KEY, the base URL from `base_url`, ANAM_API_URL or
    https://api.anam.ai.

    Parameters
    ----------
    api_key : str, optional
        The Anam API key; by default the ``ANAM_API_KEY`` environment variable. It never
        appears in a repr, a log line or an exception.
    base_url : str, optional
        The API's base URL; by default ``ANAM_API_URL``, else ``https://api.anam.ai``.
    timeout : float or httpx.Timeout
        Seconds allowed for each request as a whole, connect to last byte (with an
        ``httpx.Timeout``, its longest phase). A call that is retried ends within
        ``(max_retries + 1) * timeout`` plus the waits between attempts (each capped).
    max_retries : int
        Retries of a request that failed with 408/409/429/5xx, a dropped connection or its
        deadline, with exponential backoff and jitter (``Retry-After`` honoured, up to 60 s).
    max_response_bytes : int
        The largest answer read (default 64 MiB; a 100-session page is about 185 KB). The
        body is streamed, and a larger one fails with an error naming this option.
    allow_insecure_http : bool
        Allow a plain ``http://`` base URL to a host other than this machine (a trusted
        internal proxy): without it the key would cross the network unencrypted, so it is refused.
    concurrency : int
        Requests in flight at most; halves on 429 and recovers.
    transport : httpx.AsyncBaseTransport, optional
        Another transport, e.g. ``httpx.ASGITransport`` to reach an in-process server.
    backoff : Backoff, optional
        The retry timing; inject ``sleep``/``now`` in tests.

    Raises
    ------
    ConfigurationError
        When no API key is set, an option is out of range (the message names it), or the
        base URL is unsafe: credentials in it (``user:pass@``), or plain ``http://`` to
        another machine without `allow_insecure_http`.
    """

    #: Records come as the API sent them (see `SessionSource.redaction`).
    redaction: Redaction | None = None

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | httpx.Timeout = 30.0, max_retries: int = 4,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 allow_insecure_http: bool = False,
                 concurrency: int = 8, transport: httpx.AsyncBaseTransport | None = None,
                 backoff: Backoff | None = None) -> None:
        key = api_key_from_env(api_key)
        if key is None:
            raise ConfigurationError(
                f"no Anam API key: set the {API_KEY_ENV} environment variable (or pass api_key=...); "
                "anam_notebooks.connect() falls back to the built-in simulator when no key is set")
        _check_int("max_retries", max_retries, 0)
        _check_int("concurrency", concurrency, 1)
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError(
                f"transport={transport!r} is not an httpx.AsyncBaseTransport "
                "(e.g. httpx.AsyncHTTPTransport or httpx.ASGITransport)")
        self.base_url: str = check_base_url(
            base_url_from_env(base_url), allow_insecure_http=allow_insecure_http is True,
            in_process=isinstance(transport, httpx.ASGITransport))
        self.source: str = self.base_url
        self.concurrency = concurrency
        self._core = HttpCore(api_key=key, base_url=self.base_url, timeout=make_timeout(timeout),
                              max_retries=max_retries, concurrency=concurrency,
                              transport=transport, backoff=backoff or Backoff(),
                              max_response_bytes=check_max_response_bytes(max_response_bytes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, source={self.source!r})"

    async def __aenter__(self) -> AsyncAnamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._core.aclose()

    async def get_session(self, session_id: Any) -> Record:
        """One session record (a dict, as the API sent it).

        Parameters
        ----------
        session_id : str or uuid.UUID
            The session's UUID, in any common form (upper case, braces, ``urn:uuid:``), or a
            URL that holds exactly one.

        Returns
        -------
        dict
            The ``Session`` record exactly as the API sent it.

        Raises
        ------
        InvalidSessionId
            Before any request, when `session_id` holds no UUID.
        NotFoundError
            The API knows no such session (404).
        AnamAPIError
            Any other error answer after retries (401 is `AuthenticationError`, 5xx `ServerError`).
        AnamConnectionError
            The API could not be reached, or did not answer in time.
        """
        sid = normalize_session_id(session_id)
        return await self._get_object(f"{SESSIONS_PATH}/{sid}")

    async def get_transcript(self, session_id: Any) -> Record:
        """The session's transcript.

        Parameters
        ----------
        session_id : str or uuid.UUID
            The session's UUID, in any common form (upper case, braces, ``urn:uuid:``), or a
            URL that holds exactly one.

        Returns
        -------
        dict
            ``sessionId``, ``personaName``, times, ``totalMessages`` and ``messages``
            (role, message, timestamp, speakingDurationSeconds, wasInterrupted).

        Raises
        ------
        InvalidSessionId
            Before any request, when `session_id` holds no UUID.
        NotFoundError
            The API knows no such session (404), or kept no transcript (zero data retention).
        AnamAPIError
            Any other error answer after retries (401 is `AuthenticationError`, 5xx `ServerError`).
        AnamConnectionError
            The API could not be reached, or did not answer in time.
        """
        sid = normalize_session_id(session_id)
        return await self._get_object(f"{SESSIONS_PATH}/{sid}/transcript")

    async def get_recording_url(self, session_id: Any) -> str:
        """A presigned download URL for the recording, valid about an hour.

        Parameters
        ----------
        session_id : str or uuid.UUID
            The session's UUID, in any common form (upper case, braces, ``urn:uuid:``), or a
            URL that holds exactly one.

        Returns
        -------
        str
            The URL (it grants access: share it only with people who may watch the session).

        Raises
        ------
        InvalidSessionId
            Before any request, when `session_id` holds no UUID.
        NotFoundError
            The API knows no such session (404), or kept no recording.
        AnamAPIError
            Any other error answer after retries (401 is `AuthenticationError`, 5xx `ServerError`).
        AnamConnectionError
            The API could not be reached, or did not answer in time.
        """
        sid = normalize_session_id(session_id)
        path = f"{SESSIONS_PATH}/{sid}/recording"
        url = (await self._get_object(path)).get("recordingUrl")
        if not isinstance(url, str) or not url:
            raise AnamAPIError(f"GET {path} -> 200 but the answer has no 'recordingUrl'",
                               status_code=200, method="GET", path=path)
        return url

    async def list_sessions(self, page: int = 1, per_page: int = 100, search: str | None = None,
                            persona_id: Any = None, api_key_id: Any = None) -> Record:
        """One raw page of sessions, exactly as the API answered.

        Parameters
        ----------
        page : int
            The page number, from 1.
        per_page : int
            Sessions per page, 1 to 100.
        search : str, optional
            Matches session ids and client labels.
        persona_id : str or uuid.UUID, optional
            Only this persona's sessions.
        api_key_id : str or uuid.UUID, optional
            Only sessions started with this API key.

        Returns
        -------
        dict
            ``{"data": [Session, ...], "meta": {"total", "lastPage", "currentPage", ...}}``.

        Raises
        ------
        BadRequestError
            The API refused the query (400).
        ValueError
            Before any request, for a page below 1, a per_page outside 1..100 or a filter that
            is not a UUID.
        AnamAPIError
            Any other error answer after retries.
        AnamConnectionError
            The API could not be reached.
        """
        params = _list_params(per_page, search, persona_id, api_key_id)
        return await self._get_object(SESSIONS_PATH, {"page": check_page(page), **params})

    def iter_sessions(self, *, search: str | None = None, persona_id: Any = None,
                      api_key_id: Any = None, per_page: int = 100, since: datetime | None = None,
                      stop: StopWhen | None = None) -> AsyncIterator[Record]:
        """Every session of every page, each id once, newest first page by page.

        Use it as ``async for session in client.iter_sessions(): ...`` (the blocking
        `AnamClient.iter_sessions` is a plain iterator). Pages 2..N are read concurrently;
        sessions that arrive meanwhile are picked up by re-reading the pages that shifted.
        `since` (tz-aware) stops after the first page whose sessions all started earlier
        (older ones may still be yielded: filter them yourself); `stop(record) -> bool` stops
        after the page holding a record it accepts. Both read pages a couple at a time. If
        pages still fail after retries, the iterator ends with PaginationError once every other
        record was yielded (its `.ids` lists them). Records are not kept by the iterator:
        memory stays flat however long the list.

        Parameters
        ----------
        search : str, optional
            Matches session ids and client labels.
        persona_id : str or uuid.UUID, optional
            Only this persona's sessions.
        api_key_id : str or uuid.UUID, optional
            Only sessions started with this API key.
        per_page : int
            Sessions per request, 1 to 100.
        since : datetime, optional
            Timezone-aware: stop after the first page whose sessions all started earlier
            (older ones may still be yielded: filter them yourself).
        stop : callable, optional
            ``stop(record) -> bool``: stop after the page holding a record it accepts.

        Yields
        ------
        dict
            Each session record once, newest first page by page.

        Raises
        ------
        ValueError
            Before any request, for a bad filter, `per_page`, `since` or `stop`.
        PaginationError
            When pages still fail after retries, after every other record was yielded; its
            ``ids`` are the sessions read.
        AnamAPIError
            An error answer on the first page (401 is `AuthenticationError`).
        """
        return _flatten(self._session_batches(search=search, persona_id=persona_id,
                                              api_key_id=api_key_id, per_page=per_page,
                                              since=since, stop=stop))

    def iter_session_pages(self, *, search: str | None = None, persona_id: Any = None,
                           api_key_id: Any = None, per_page: int = 100, since: datetime | None = None,
                           stop: StopWhen | None = None,
                           resume: _paging.Coverage | None = None) -> AsyncIterator[_paging.Batch]:
        """Like `iter_sessions`, one `Batch` (a list of new records) per page read.

        Parameters
        ----------
        search, persona_id, api_key_id, per_page, since, stop
            As for `iter_sessions`.
        resume
            Tail positions (`Batch.span` of batches stored earlier in a full read, merged in a
            `Coverage`): their sessions are not yielded again and their pages are not re-read
            unless the list moved under them. Ignored when `since` or `stop` is given.

        Returns
        -------
        async iterator of Batch
            Each batch's `.span` gives the positions its page covered (None without totals).

        Raises
        ------
        PaginationError
            When pages still fail after retries, once every other page was yielded.
        """
        return self._session_batches(search=search, persona_id=persona_id, api_key_id=api_key_id,
                                     per_page=per_page, since=since, stop=stop, resume=resume)

    def iter_transcripts(self, session_ids: Iterable[str]) -> AsyncIterator[tuple[str, TranscriptResult]]:
        """Many transcripts at once, through the one request path (its concurrency limit,
        retries and backoff): ``(session_id, transcript)`` as each answer arrives, in no
        particular order.

        A session whose transcript cannot be read yields the error instead of raising it, so
        one bad session never loses the others: `NotFoundError` (unknown, or none kept),
        `InvalidSessionId`, or the `AnamAPIError` / `AnamConnectionError` left after retries.
        Closing the iterator early cancels the requests still in flight.

        Parameters
        ----------
        session_ids : iterable of str
            The sessions to read (every request is started at once; the client's limiter
            keeps `concurrency` of them in flight).

        Returns
        -------
        iterator of (str, dict or Exception)
            Each session id once, with its transcript or the error reading it raised (an async
            iterator on `AsyncAnamClient`, a plain one on `AnamClient`).

        Raises
        ------
        TypeError
            When `session_ids` is not iterable.
        """
        return self._transcripts(list(session_ids))

    async def _transcripts(self, ids: list[str]) -> AsyncIterator[tuple[str, TranscriptResult]]:
        done: asyncio.Queue[tuple[str, TranscriptResult]] = asyncio.Queue()

        async def one(sid: str) -> None:
            result: TranscriptResult
            try:
                result = await self.get_transcript(sid)
            except (AnamError, ValueError) as exc:
                result = exc
            done.put_nowait((sid, result))

        tasks = [asyncio.ensure_future(one(sid)) for sid in ids]
        try:
            for _ in ids:
                yield await done.get()
        finally:
            for task in tasks:
                task.cancel()

    def _session_batches(self, *, search: str | None, persona_id: Any, api_key_id: Any,
                         per_page: int, since: datetime | None,
                         stop: StopWhen | None, resume: _paging.Coverage | None = None
                         ) -> AsyncIterator[_paging.Batch]:
        """Validates now, then yields records page by page (the sync facade hops per batch)."""
        params = _list_params(per_page, search, persona_id, api_key_id)
        if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
            raise ValueError(f"since={since!r} must be a timezone-aware datetime, "
                             "e.g. datetime.now(timezone.utc) - timedelta(hours=24)")
        if stop is not None and not callable(stop):
            raise ValueError(f"stop={stop!r} must be a callable taking a session dict and returning bool")

        async def fetch(page: int) -> Any:
            return await self._core.get_json(SESSIONS_PATH, {"page": page, **params})

        return _paging.iterate(fetch, per_page=params["perPage"], concurrency=self.concurrency,
                               since=since, stop=stop, resume=resume)

    async def _get_object(self, path: str, params: dict[str, Any] | None = None) -> Record:
        body = await self._core.get_json(path, params)
        if not isinstance(body, dict):
            raise AnamAPIError(f"GET {path} -> 200 but the answer is a {type(body).__name__}, "
                               "not a JSON object", status_code=200, method="GET", path=path)
        return body


class AnamClient:
    """Blocking client for notebooks and scripts: the same methods as `AsyncAnamClient`, run on
    a background event loop so they work in plain Python, in Jupyter (loop already running,
    top-level `await` too) and under papermill. Use it as a context manager or call `close()`.

    >>> client = AnamClient()                     # key from ANAM_API_KEY
    >>> client.get_session("https://lab.anam.ai/sessions/<uuid>")
    >>> for session in client.iter_sessions(since=datetime.now(timezone.utc) - timedelta(days=1)):
    ...     ...

    Parameters
    ----------
    api_key : str, optional
        The Anam API key; by default the ``ANAM_API_KEY`` environment variable. It never
        appears in a repr, a log line or an exception.
    base_url : str, optional
        The API's base URL; by default ``ANAM_API_URL``, else ``https://api.anam.ai``.
    timeout : float or httpx.Timeout
        Seconds allowed for each request as a whole, connect to last byte (with an
        ``httpx.Timeout``, its longest phase). A call that is retried ends within
        ``(max_retries + 1) * timeout`` plus the waits between attempts (each capped).
    max_retries : int
        Retries of a request that failed with 408/409/429/5xx, a dropped connection or its
        deadline, with exponential backoff and jitter (``Retry-After`` honoured, up to 60 s).
    max_response_bytes : int
        The largest answer read (default 64 MiB; a 100-session page is about 185 KB). The
        body is streamed, and a larger one fails with an error naming this option.
    allow_insecure_http : bool
        Allow a plain ``http://`` base URL to a host other than this machine (a trusted
        internal proxy): without it the key would cross the network unencrypted, so it is refused.
    concurrency : int
        Requests in flight at most; halves on 429 and recovers.
    transport : httpx.AsyncBaseTransport, optional
        Another transport, e.g. ``httpx.ASGITransport`` to reach an in-process server.
    backoff : Backoff, optional
        The retry timing; inject ``sleep``/``now`` in tests.

    Raises
    ------
    ConfigurationError
        When no API key is set, an option is out of range (the message names it), or the
        base URL is unsafe: credentials in it (``user:pass@``), or plain ``http://`` to
        another machine without `allow_insecure_http`.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | httpx.Timeout = 30.0, max_retries: int = 4,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 allow_insecure_http: bool = False,
                 concurrency: int = 8, transport: httpx.AsyncBaseTransport | None = None,
                 backoff: Backoff | None = None) -> None:
        self._async = AsyncAnamClient(api_key, base_url, timeout=timeout, max_retries=max_retries,
                                      max_response_bytes=max_response_bytes,
                                      allow_insecure_http=allow_insecure_http,
                                      concurrency=concurrency, transport=transport, backoff=backoff)
        self.base_url: str = self._async.base_url
        self.source: str = self.base_url

    #: Records come as the API sent them (see `SessionSource.redaction`).
    redaction: Redaction | None = None

    @property
    def concurrency(self) -> int:
        """Requests in flight at most."""
        return self._async.concurrency

    def __repr__(self) -> str:
        return f"AnamClient(base_url={self.base_url!r}, source={self.source!r})"

    def __enter__(self) -> AnamClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        RUNNER.run(self._async.aclose())

    def get_session(self, session_id: Any) -> Record:
        return self._run(self._async.get_session, session_id)

    def get_transcript(self, session_id: Any) -> Record:
        return self._run(self._async.get_transcript, session_id)

    def get_recording_url(self, session_id: Any) -> str:
        return self._run(self._async.get_recording_url, session_id)

    def list_sessions(self, page: int = 1, per_page: int = 100, search: str | None = None,
                      persona_id: Any = None, api_key_id: Any = None) -> Record:
        return self._run(self._async.list_sessions, page, per_page, search, persona_id, api_key_id)

    def iter_sessions(self, *, search: str | None = None, persona_id: Any = None,
                      api_key_id: Any = None, per_page: int = 100, since: datetime | None = None,
                      stop: StopWhen | None = None) -> Iterator[Record]:
        batches = self._async._session_batches(search=search, persona_id=persona_id,
                                               api_key_id=api_key_id, per_page=per_page,
                                               since=since, stop=stop)
        return _drain(batches)

    def iter_session_pages(self, *, search: str | None = None, persona_id: Any = None,
                           api_key_id: Any = None, per_page: int = 100, since: datetime | None = None,
                           stop: StopWhen | None = None,
                           resume: _paging.Coverage | None = None) -> Iterator[_paging.Batch]:
        batches = self._async._session_batches(search=search, persona_id=persona_id,
                                               api_key_id=api_key_id, per_page=per_page,
                                               since=since, stop=stop, resume=resume)
        return RUNNER.iterate(batches)

    def iter_transcripts(self, session_ids: Iterable[str]) -> Iterator[tuple[str, TranscriptResult]]:
        return RUNNER.iterate(self._async.iter_transcripts(session_ids))

    def _run(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return RUNNER.run(method(*args))


# The blocking methods behave exactly like the coroutines they run: one text documents both.
for _name in ("get_session", "get_transcript", "get_recording_url", "list_sessions", "iter_sessions",
              "iter_session_pages", "iter_transcripts"):
    getattr(AnamClient, _name).__doc__ = getattr(AsyncAnamClient, _name).__doc__


class _Flatten:
    """Records of the batches one by one; only a batch boundary awaits the pager (no
    async-generator frame per record)."""

    def __init__(self, batches: AsyncIterator[_paging.Batch]) -> None:
        self._batches = batches
        self._current: Iterator[Record] = iter(())

    def __aiter__(self) -> _Flatten:
        return self

    async def __anext__(self) -> Record:
        while True:
            record = next(self._current, _MISSING)
            if record is not _MISSING:
                return record  # type: ignore[return-value]
            self._current = iter(await anext(self._batches))

    async def aclose(self) -> None:
        aclose = getattr(self._batches, "aclose", None)
        if aclose is not None:
            await aclose()


def _flatten(batches: AsyncIterator[_paging.Batch]) -> AsyncIterator[Record]:
    return _Flatten(batches)


_MISSING = object()


def _drain(batches: AsyncIterator[_paging.Batch]) -> Iterator[Record]:
    for batch in RUNNER.iterate(batches):
        yield from batch


def _list_params(per_page: Any, search: Any, persona_id: Any, api_key_id: Any) -> dict[str, Any]:
    return {"perPage": check_per_page(per_page), "search": check_search(search),
            "personaId": normalize_uuid_filter("persona_id", persona_id),
            "apiKeyId": normalize_uuid_filter("api_key_id", api_key_id)}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name}={value!r} is not valid: expected an integer >= {minimum}")
