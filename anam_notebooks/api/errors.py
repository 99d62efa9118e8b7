"""Typed errors of the toolkit. Messages name the request and the server's words, never the key."""

from __future__ import annotations

from typing import Any


class AnamError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(AnamError):
    """The client cannot be built: no API key, or an unusable base URL."""


class InvalidSessionId(AnamError, ValueError):
    """A session id that is not a UUID, raised before any request is sent."""

    def __init__(self, value: object) -> None:
        self.value = value
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(
            f"{shown} is not a session id: expected a UUID such as "
            "'8f6c2f2e-1c1a-4b7e-9f5e-2d3c4b5a6978' (a URL containing one also works)"
        )


class AnamAPIError(AnamError):
    """The API answered with an error status."""

    def __init__(self, message: str, *, status_code: int, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.path = path


class BadRequestError(AnamAPIError):
    """400: the server rejected the query or the id."""


class AuthenticationError(AnamAPIError):
    """401: the API key was missing or refused."""


class NotFoundError(AnamAPIError):
    """404: no such session, or no transcript/recording kept for it."""


class RateLimitError(AnamAPIError):
    """429 after all retries were spent."""


class ServerError(AnamAPIError):
    """5xx after all retries were spent."""


class AnamConnectionError(AnamError):
    """A transport failure or time-out after all retries were spent."""


class PaginationError(AnamError):
    """Some pages failed after retries, after every other page was read.

    Nothing fetched is lost, and nothing fetched is held twice: every record read was already
    handed to the consumer before this is raised (an `iter_sessions` loop has seen them all).
    `.ids` lists their ids; `.frame` is the partial sessions frame when the error comes
    through `sessions_frame` / `fetch_sessions` (None from a bare iterator); with a cache, the
    partial read is also stored, so the next fetch resumes from it.
    """

    def __init__(self, message: str, *, ids: list[str], failed_pages: list[int],
                 causes: dict[int, BaseException] | None = None, frame: Any = None) -> None:
        super().__init__(message)
        self.ids = ids
        self.failed_pages = failed_pages
        self.causes = causes or {}
        self.frame = frame
