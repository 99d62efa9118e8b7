"""The simulated Anam sessions API as a Starlette app: `create_app` and its `Simulator`.

Every endpoint of the real API is served from a `Fleet` with the same status codes and
bodies; knobs add latency, faults, rate limiting and live traffic (drift) on demand.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..api.ids import UUID_PATTERN
from .artifacts import has_recording, recording_url
from .fleet import Fleet, generate_fleet
from .knobs import Knobs, TokenBucket
from .listing import SessionIndex, page_of
from .openapi import openapi_bytes
from .settings import DEMO_API_KEY
from .timefmt import from_ms, parse_iso, to_ms

UUID_RE = re.compile(rf"^{UUID_PATTERN}$")
POSITIVE_INT = re.compile(r"^[0-9]{1,9}$")
REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
FAULTS = (500, 502, 503)
FLEET_OPTIONS = {"sessions", "span", "end", "incidents"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The API's error body: status code, reason phrase and a human message."""
    body = {"statusCode": status, "error": REASONS[status], "message": message}
    return json_response(_dumps(body), status, headers)


class _BadQuery(ValueError):
    pass


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw) if POSITIVE_INT.match(raw) else None
    if value is None or value < low or (high is not None and value > high):
        valid = f"an integer from {low} to {high}" if high else f"an integer >= {low}"
        raise _BadQuery(f"{name}={raw!r} is not valid: expected {valid}")
    return value


def _uuid_param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not UUID_RE.match(raw):
        raise _BadQuery(f"{name}={raw!r} is not a valid UUID")
    return raw


class Simulator:
    """State behind the app: its own copy of the fleet, knobs, request stats and caches.

    `stats` counts requests: "total", per endpoint ("list", "get", "transcript",
    "recording", "openapi") and per status code (int keys: 200, 404, 429 ...).
    """

    def __init__(self, fleet: Fleet, knobs: Knobs) -> None:
        self.fleet = fleet.copy()
        self.knobs = knobs
        self.stats: Counter = Counter()
        self._rng = random.Random(knobs.seed)
        self._bucket = TokenBucket(knobs.rate_limit) if knobs.rate_limit else None
        self._index = SessionIndex(self.fleet.sessions)
        self._encoded: dict[str, bytes] = {}

    @property
    def api_key(self) -> str:
        return self.knobs.api_key

    def reset_stats(self) -> None:
        self.stats.clear()

    def add_sessions(self, n: int) -> list[dict]:
        """Insert `n` just-started sessions at the head (newest first) and return them."""
        fresh = self.fleet.add_sessions(n, seed=self._rng.getrandbits(32))
        self._index.extend(reversed(fresh))
        return fresh

    def end_session(self, session_id: str, status: str = "NORMAL_EXIT",
                    at: datetime | None = None) -> dict:
        """Let an active session finish, as live traffic does: end time (default: three minutes
        after it started, or just after its last update), length and exit status. Returns the
        new record; the fleet the app was built from is left untouched."""
        old = self.fleet.by_id[session_id]
        if old.get("endTime") is not None:
            raise ValueError(f"session {session_id} already ended at {old['endTime']}")
        start = parse_iso(old["startTime"])
        if at is None:
            updated = parse_iso(old["updatedAt"]) if old.get("updatedAt") else start
            at = max(start + timedelta(minutes=3), updated + timedelta(seconds=1))
        end = from_ms(to_ms(at))
        stamp = end.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        new = {**old, "endTime": stamp, "sessionLengthMs": to_ms(end) - to_ms(start),
               "exitStatus": status, "updatedAt": stamp}
        self.fleet.replace(new)
        self._encoded.pop(session_id, None)
        return new

    def encoded(self, session_id: str) -> bytes:
        """A record's JSON, serialised once (records are treated as immutable once served)."""
        body = self._encoded.get(session_id)
        if body is None:
            body = self._encoded[session_id] = _dumps(self.fleet.by_id[session_id])
        return body

    # -- request plumbing -------------------------------------------------------------
    async def handle(self, request: Request, endpoint: str,
                     handler: Callable[[Request], Awaitable[Response] | Response]) -> Response:
        self.stats["total"] += 1
        self.stats[endpoint] += 1
        response = await self._guarded(request, handler)
        self.stats[response.status_code] += 1
        return response

    async def _guarded(self, request: Request, handler: Callable) -> Response:
        knobs = self.knobs
        if knobs.latency:
            await asyncio.sleep(knobs.latency)
        if not self._authorised(request.headers.get("authorization", "")):
            return error(401, "Invalid or missing API key: send 'Authorization: Bearer <API key>'")
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait:
                retry = max(1, math.ceil(wait))
                return error(429, f"Rate limit of {knobs.rate_limit:g} requests per second exceeded; "
                                  f"retry after {retry} s", {"Retry-After": str(retry)})
        if knobs.fault_rate and self._rng.random() < knobs.fault_rate:
            status = self._rng.choice(FAULTS)
            return error(status, f"Simulated upstream failure ({status})")
        try:
            result = handler(request)
            return await result if asyncio.iscoroutine(result) else result
        except _BadQuery as exc:
            return error(400, str(exc))

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                  self.knobs.api_key.encode())

    def _session_or_error(self, request: Request) -> dict | Response:
        sid = request.path_params["id"]
        if not UUID_RE.match(sid):
            return error(400, f"Invalid session ID {sid!r}: expected a UUID")
        record = self.fleet.by_id.get(sid) or self.fleet.by_id.get(sid.lower())
        if record is None:
            return error(404, f"Session {sid} not found")
        return record

    # -- endpoints ----------------------------------------------------------------------
    def list_sessions(self, request: Request) -> Response:
        page = _int_param(request, "page", 1, 1, None)
        per_page = _int_param(request, "perPage", 10, 1, 100)
        persona_id = _uuid_param(request, "personaId")
        api_key_id = _uuid_param(request, "apiKeyId")
        search = request.query_params.get("search") or None
        if self.knobs.drift:
            self.add_sessions(self.knobs.drift)
        ids, meta = page_of(self._index.matching(search, persona_id, api_key_id), page, per_page)
        body = b'{"data":[' + b",".join(self.encoded(sid) for sid in ids) + b'],"meta":' + _dumps(meta) + b"}"
        return json_response(body)

    def get_session(self, request: Request) -> Response:
        found = self._session_or_error(request)
        return found if isinstance(found, Response) else json_response(self.encoded(found["id"]))

    def get_transcript(self, request: Request) -> Response:
        found = self._session_or_error(request)
        if isinstance(found, Response):
            return found
        transcript = self.fleet.transcripts.get(found["id"])
        if transcript is None:
            return error(404, f"No transcript kept for session {found['id']} (zero data retention)")
        return json_response(_dumps(transcript))

    def get_recording(self, request: Request) -> Response:
        found = self._session_or_error(request)
        if isinstance(found, Response):
            return found
        if not has_recording(found):
            return error(404, f"No recording available for session {found['id']}")
        return json_response(_dumps({"recordingUrl": recording_url(found)}))


def create_app(fleet: Fleet | None = None, *, api_key: str = DEMO_API_KEY, latency: float = 0.0,
               fault_rate: float = 0.0, rate_limit: float | None = None, drift: int = 0,
               seed: int = 0, **fleet_kwargs: Any) -> Starlette:
    """A Starlette app serving the sessions API from `fleet` (built with `seed` if None).

    `fleet_kwargs` (sessions, span, end, incidents) go to `generate_fleet`; the simulator is
    `app.state.simulator`.
    """
    knobs = Knobs.checked(api_key=api_key, latency=latency, fault_rate=fault_rate,
                          rate_limit=rate_limit, drift=drift, seed=seed)
    unknown = set(fleet_kwargs) - FLEET_OPTIONS
    if unknown:
        raise TypeError(f"create_app() got unknown options {sorted(unknown)}; "
                        f"fleet options are {sorted(FLEET_OPTIONS)}")
    if fleet is None:
        fleet = generate_fleet(seed=seed, **fleet_kwargs)
    elif fleet_kwargs:
        raise ValueError(f"give either a fleet or fleet options {sorted(fleet_kwargs)}, not both")
    simulator = Simulator(fleet, knobs)

    def route(path: str, endpoint: str, handler: Callable) -> Route:
        async def view(request: Request) -> Response:
            return await simulator.handle(request, endpoint, handler)
        return Route(path, view, methods=["GET"], name=endpoint)

    async def openapi(request: Request) -> Response:
        simulator.stats["total"] += 1
        simulator.stats["openapi"] += 1
        simulator.stats[200] += 1
        return json_response(openapi_bytes())

    async def unrouted(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, f"No route for {request.method} {request.url.path}")

    handlers: dict[Any, Any] = {404: unrouted, 405: unrouted}
    app = Starlette(exception_handlers=handlers, routes=[
        route("/v1/sessions", "list", simulator.list_sessions),
        route("/v1/sessions/{id}", "get", simulator.get_session),
        route("/v1/sessions/{id}/transcript", "transcript", simulator.get_transcript),
        route("/v1/sessions/{id}/recording", "recording", simulator.get_recording),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
    ])
    app.state.simulator = simulator
    return app
