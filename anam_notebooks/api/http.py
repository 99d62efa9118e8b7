"""The one request path: bearer auth, timeouts, one connection pool, retries and typed errors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from .config import API_KEY_ENV, __version__, without_credentials
from .errors import (
    AnamAPIError,
    AnamConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from .limiter import AdaptiveLimiter
from .retry import RETRYABLE_ERRORS, Backoff, is_retryable_status

logger = logging.getLogger("anam_notebooks")

_CONNECT_TIMEOUT = 5.0
_MESSAGE_LIMIT = 300
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a 100-session page is ~185 KB; hours of transcript fit
_ERROR_BODY_LIMIT = 64 * 1024  # an error answer is read this far: only its first words are shown
_FRAGMENT = 8  # a run of this many characters of the key is scrubbed wherever it appears
_BY_STATUS: dict[int, type[AnamAPIError]] = {
    400: BadRequestError, 401: AuthenticationError, 404: NotFoundError, 429: RateLimitError,
}


class Secret:
    """Holds the API key so that no repr, str or vars() dump of its owner can show it."""

    __slots__ = ("_pattern", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        # A key of a few characters cannot be told from ordinary words; real keys are long.
        # Echoes come back altered (upper-cased, cut short, split): any run of _FRAGMENT
        # characters of the key, in any case, marks text to blank out.
        if len(value) >= _FRAGMENT:
            pieces = {value[i:i + _FRAGMENT] for i in range(len(value) - _FRAGMENT + 1)}
        else:
            pieces = {value} if len(value) >= 4 else set()
        alternatives = "|".join(sorted(map(re.escape, pieces)))
        self._pattern = re.compile(f"(?=({alternatives}))", re.IGNORECASE) if pieces else None

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with the key blanked out: whole or any long fragment of it, in any case
        (servers and proxies may echo headers, altered)."""
        if self._pattern is None or not text:
            return text
        spans: list[list[int]] = []
        for match in self._pattern.finditer(text):
            start, end = match.start(1), match.end(1)
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        for start, end in reversed(spans):
            text = text[:start] + "[REDACTED]" + text[end:]
        return text

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def make_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """A read/write/pool timeout of `timeout` seconds with a short connect timeout."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"timeout={timeout!r} is not valid: give seconds > 0 or an httpx.Timeout")
    return httpx.Timeout(float(timeout), connect=min(float(timeout), _CONNECT_TIMEOUT))


def whole_request_seconds(timeout: httpx.Timeout) -> float | None:
    """The deadline of one request, connect to last byte: the longest of the phase timeouts
    (for `timeout=30`, 30 s); None when no phase has one."""
    phases = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t is not None]
    return max(phases) if phases else None


def check_max_response_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise ConfigurationError(f"max_response_bytes={value!r} is not valid: expected a whole number "
                                 f"of bytes >= 1024 (default {DEFAULT_MAX_RESPONSE_BYTES:,}, 64 MiB)")
    return value


def is_loopback_host(host: str) -> bool:
    """Does `host` name this machine (localhost, 127.0.0.0/8, ::1, or 0.0.0.0, which a
    connection reaches as this machine)?"""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def check_base_url(base_url: str, *, allow_insecure_http: bool = False, in_process: bool = False) -> str:
    """`base_url` without a trailing slash, once it is safe to send the key there.

    Refused: anything but http(s)://host; a user name or password in the URL (it would be
    shown wherever the URL is, and httpx would send it as Basic auth instead of the key); plain
    http:// to a host that is not this machine, where the key would cross the network
    unencrypted, unless `allow_insecure_http` (a trusted internal proxy) or `in_process` (an
    in-process transport: nothing leaves the process).
    """
    shown = without_credentials(str(base_url))
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url={shown!r} is not a URL: {without_credentials(str(exc))}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url={shown!r} is not usable: expected http(s)://host, e.g. https://api.anam.ai")
    if url.userinfo:
        bare = str(url.copy_with(username=None, password=None)).rstrip("/")
        raise ConfigurationError(
            f"base_url={shown!r} carries a user name or password: refused, because it would show in "
            "reprs, logs and reports and be sent as Basic auth instead of the API key. Give "
            f"{bare!r} and the key in {API_KEY_ENV} (or api_key=...)")
    if url.scheme == "http" and not (allow_insecure_http or in_process or is_loopback_host(url.host)):
        raise ConfigurationError(
            f"base_url={shown!r} is plain http:// to another machine: the API key would cross the "
            "network unencrypted. Use https://, or pass allow_insecure_http=True if this is a "
            "trusted internal proxy")
    return str(base_url).rstrip("/")


class HttpCore:
    """Sends GET requests to the API and returns decoded JSON, or raises a typed AnamError.

    Retries 408/409/429/5xx and transport failures with backoff (honouring Retry-After), and
    routes every attempt through an adaptive concurrency limiter shared by the whole client.

    Each attempt has one deadline, connect to last byte (`whole_request_seconds`), so a
    server that trickles bytes cannot hold a call; a retried call therefore ends within
    attempts x timeout plus the waits between them (each at most `Backoff.maximum` or
    `Backoff.retry_after_cap`). Bodies are streamed and refused beyond `max_response_bytes`;
    a redirect is an error, never followed with the key.
    """

    def __init__(self, *, api_key: str, base_url: str, timeout: httpx.Timeout, max_retries: int,
                 concurrency: int, transport: httpx.AsyncBaseTransport | None,
                 backoff: Backoff, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.base_url = base_url
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_response_bytes = max_response_bytes
        self._deadline = whole_request_seconds(timeout)
        self.limiter = AdaptiveLimiter(concurrency)
        self._key = Secret(api_key)
        self._timeout = timeout
        self._transport = transport
        self._pool_size = concurrency
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise ConfigurationError("this client is closed: create a new one (or use it in a with block)")
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {self._key.reveal()}",
                         "Accept": "application/json",
                         "User-Agent": f"anam-notebooks/{__version__}"},
                timeout=self._timeout,
                transport=self._transport,
                limits=httpx.Limits(max_connections=max(self._pool_size, 10),
                                    max_keepalive_connections=max(self._pool_size, 10)),
            )
        return self._client

    async def aclose(self) -> None:
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET `path` and decode the JSON body, retrying what is worth retrying."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        shown = f"{path}?{urlencode(query)}" if query else path
        client = self._http()
        error: Exception
        for attempt in range(self.max_retries + 1):
            retry_after = None
            started = time.perf_counter()
            async with self.limiter.slot() as epoch:
                try:
                    async with asyncio.timeout(self._deadline):
                        response, content = await self._fetch(client, path, query, shown)
                except TimeoutError as exc:
                    error = self._deadline_error(shown, attempt)
                    error.__cause__ = exc
                    logger.debug("GET %s -> deadline of %s s passed (attempt %d)", shown, self._deadline,
                                 attempt + 1)
                except RETRYABLE_ERRORS as exc:
                    error = self._connection_error(shown, exc, attempt)
                    error.__cause__ = exc
                    logger.debug("GET %s -> %s (attempt %d)", shown, type(exc).__name__, attempt + 1)
                except httpx.HTTPError as exc:
                    raise self._connection_error(shown, exc, attempt) from exc
                else:
                    status = response.status_code
                    logger.debug("GET %s -> %d (attempt %d, %.3f s)", shown, status, attempt + 1,
                                 time.perf_counter() - started)
                    if status < 300:
                        self.limiter.succeeded()
                        return self._decode(response, content, shown)
                    if status < 400:
                        raise self._redirect_error(response, shown)
                    if status == 429:
                        self.limiter.throttled(epoch)
                    error = self._status_error(response, content, shown, attempt)
                    if not is_retryable_status(status):
                        raise error
                    retry_after = response.headers.get("retry-after")
            if attempt == self.max_retries:
                break
            delay = self.backoff.delay(attempt, retry_after)
            logger.debug("GET %s: retry %d in %.2f s", shown, attempt + 1, delay)
            await self.backoff.sleep(delay)
        raise error

    async def _fetch(self, client: httpx.AsyncClient, path: str, query: dict[str, Any],
                     shown: str) -> tuple[httpx.Response, bytes]:
        """Send the request and stream its body in, refusing more than `max_response_bytes`
        (an error answer is read only as far as its message is shown)."""
        response = await client.send(client.build_request("GET", path, params=query or None), stream=True)
        try:
            ok = response.status_code < 300
            limit = self.max_response_bytes if ok else _ERROR_BODY_LIMIT
            declared = response.headers.get("content-length", "")
            if ok and declared.isdigit() and int(declared) > limit:
                raise self._too_large(response, shown, f"it declares {int(declared):,} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    if ok:
                        raise self._too_large(response, shown, f"more than {limit:,} bytes arrived")
                    chunks.append(chunk[:limit - size + len(chunk)])
                    break
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response, chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _url(self, shown: str) -> str:
        return f"{without_credentials(self.base_url)}{shown}"

    def _too_large(self, response: httpx.Response, shown: str, seen: str) -> AnamAPIError:
        limit = self.max_response_bytes
        return AnamAPIError(
            f"GET {self._url(shown)} -> {response.status_code}: the answer is larger than "
            f"max_response_bytes={limit:,} ({limit / 2**20:g} MiB; {seen}), so it was not read. "
            "If the API really sends answers this large, raise the limit: "
            "AnamClient(max_response_bytes=...)",
            status_code=response.status_code, method="GET", path=shown)

    def _deadline_error(self, shown: str, attempt: int) -> AnamConnectionError:
        return AnamConnectionError(
            f"GET {self._url(shown)} did not finish within {self._deadline:g} s{_after(attempt)} "
            f"(timeout={self._deadline:g} bounds each request as a whole, connect to last byte)")

    def _redirect_error(self, response: httpx.Response, shown: str) -> AnamAPIError:
        location = response.headers.get("location", "")
        try:
            target = str(response.url.join(location)) if location else "nowhere (no Location header)"
        except httpx.InvalidURL:
            target = location
        status = response.status_code
        return AnamAPIError(
            f"GET {self._url(shown)} -> {status} {response.reason_phrase}: a redirect to "
            f"{self._key.scrub(without_credentials(target))!r}, not followed (the API key goes only "
            "to base_url). If the API moved, set base_url (or ANAM_API_URL) to the new address",
            status_code=status, method="GET", path=shown)

    def _connection_error(self, shown: str, exc: Exception, attempt: int) -> AnamConnectionError:
        detail = self._key.scrub(str(exc)) or type(exc).__name__
        return AnamConnectionError(
            f"GET {shown} failed{_after(attempt)}: {type(exc).__name__}: {detail}")

    def _status_error(self, response: httpx.Response, content: bytes, shown: str,
                      attempt: int) -> AnamAPIError:
        status = response.status_code
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else AnamAPIError)
        message = f"GET {shown} -> {status} {response.reason_phrase}{_after(attempt)}"
        said = self._key.scrub(_server_message(content))
        if said:
            message += f": {said}"
        if status == 401:
            message += (f". The API key was refused: set {API_KEY_ENV} to a valid Anam API key "
                        "(or pass api_key=...)")
        return cls(message, status_code=status, method="GET", path=shown)

    def _decode(self, response: httpx.Response, content: bytes, shown: str) -> Any:
        try:
            return decode_json(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AnamAPIError(
                f"GET {shown} -> {response.status_code}: the body is not JSON "
                f"({len(content)} bytes of {response.headers.get('content-type', 'unknown type')})",
                status_code=response.status_code, method="GET", path=shown) from None


def decode_json(content: bytes) -> Any:
    """Decode a JSON body with orjson (about 3x faster than `json` on a 100-record page, and
    it runs on the event loop); what orjson refuses but `json` reads (NaN, integers beyond 64
    bits, a UTF-8 BOM) falls back to `json`, so hostile bodies decode as before."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _after(attempt: int) -> str:
    return f" after {attempt + 1} attempts" if attempt else ""


def _server_message(content: bytes) -> str:
    """What the server said about the error, from a JSON body when there is one."""
    try:
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, list):
                value = "; ".join(str(v) for v in value)
            if value:
                return _clip(str(value))
    return _clip(content.decode("utf-8", "replace").strip())


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT - 3] + "..."

