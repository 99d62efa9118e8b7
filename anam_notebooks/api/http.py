"""The one request path: bearer auth, timeouts, one connection pool, retries and typed errors."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from .config import API_KEY_ENV, __version__
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
_BY_STATUS: dict[int, type[AnamAPIError]] = {
    400: BadRequestError, 401: AuthenticationError, 404: NotFoundError, 429: RateLimitError,
}


class Secret:
    """Holds the API key so that no repr, str or vars() dump of its owner can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with every occurrence of the key blanked out (servers may echo headers)."""
        # A key of a few characters cannot be told from ordinary words; real keys are long.
        return text.replace(self._value, "[REDACTED]") if len(self._value) >= 4 else text

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


def check_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url={base_url!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url={base_url!r} is not usable: expected http(s)://host, e.g. https://api.anam.ai")
    return base_url.rstrip("/")


class HttpCore:
    """Sends GET requests to the API and returns decoded JSON, or raises a typed AnamError.

    Retries 408/409/429/5xx and transport failures with backoff (honouring Retry-After), and
    routes every attempt through an adaptive concurrency limiter shared by the whole client.
    """

    def __init__(self, *, api_key: str, base_url: str, timeout: httpx.Timeout, max_retries: int,
                 concurrency: int, transport: httpx.AsyncBaseTransport | None,
                 backoff: Backoff) -> None:
        self.base_url = base_url
        self.max_retries = max_retries
        self.backoff = backoff
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
                    response = await client.get(path, params=query or None)
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
                    if status < 400:
                        self.limiter.succeeded()
                        return self._decode(response, shown)
                    if status == 429:
                        self.limiter.throttled(epoch)
                    error = self._status_error(response, shown, attempt)
                    if not is_retryable_status(status):
                        raise error
                    retry_after = response.headers.get("retry-after")
            if attempt == self.max_retries:
                break
            delay = self.backoff.delay(attempt, retry_after)
            logger.debug("GET %s: retry %d in %.2f s", shown, attempt + 1, delay)
            await self.backoff.sleep(delay)
        raise error

    def _connection_error(self, shown: str, exc: Exception, attempt: int) -> AnamConnectionError:
        detail = self._key.scrub(str(exc)) or type(exc).__name__
        return AnamConnectionError(
            f"GET {shown} failed{_after(attempt)}: {type(exc).__name__}: {detail}")

    def _status_error(self, response: httpx.Response, shown: str, attempt: int) -> AnamAPIError:
        status = response.status_code
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else AnamAPIError)
        message = f"GET {shown} -> {status} {response.reason_phrase}{_after(attempt)}"
        said = self._key.scrub(_server_message(response))
        if said:
            message += f": {said}"
        if status == 401:
            message += (f". The API key was refused: set {API_KEY_ENV} to a valid Anam API key "
                        "(or pass api_key=...)")
        return cls(message, status_code=status, method="GET", path=shown)

    def _decode(self, response: httpx.Response, shown: str) -> Any:
        try:
            return decode_json(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AnamAPIError(
                f"GET {shown} -> {response.status_code}: the body is not JSON "
                f"({len(response.content)} bytes of {response.headers.get('content-type', 'unknown type')})",
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


def _server_message(response: httpx.Response) -> str:
    """What the server said about the error, from a JSON body when there is one."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, list):
                value = "; ".join(str(v) for v in value)
            if value:
                return _clip(str(value))
    return _clip(response.text.strip())


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT - 3] + "..."

