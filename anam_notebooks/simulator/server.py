"""Ways to reach the simulator: a real loopback server, or a client wired in-process."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from .app import create_app

if TYPE_CHECKING:
    from ..api.client import AnamClient

IN_PROCESS_URL = "http://anam-simulator"
CLIENT_OPTIONS = ("timeout", "max_retries", "max_response_bytes", "allow_insecure_http", "concurrency",
                  "backoff")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket, so a busy port fails here, in the caller, with a clear error."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. asyncio only sets it itself on sockets created with
    # proto=IPPROTO_TCP; without it every small response waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot serve the simulator on {host}:{port}: {exc.strerror}") from exc
    return sock


@contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int = 0,
                   *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its base URL, then stops it.

    `port=0` picks a free port; the URL carries the one actually bound.
    """
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"anam-simulator-{host}:{bound}", daemon=True)
    thread.start()
    try:
        for _ in range(int(startup_timeout / 0.01)):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError(f"the simulator did not start on {host}:{bound} within {startup_timeout} s")
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()


def demo_client(app: Any = None, **options: Any) -> AnamClient:
    """An `AnamClient` talking to a simulator in-process (no sockets), with the right key.

    Pass an `app` from `create_app`, or fleet and knob options to build one; `timeout`,
    `max_retries`, `max_response_bytes`, `allow_insecure_http`, `concurrency` and `backoff`
    go to the client.
    """
    from ..api.client import AnamClient

    client_options = {name: options.pop(name) for name in CLIENT_OPTIONS if name in options}
    if app is None:
        app = create_app(**options)
    elif options:
        raise ValueError(f"give either an app or simulator options {sorted(options)}, not both")
    return AnamClient(api_key=app.state.simulator.api_key, base_url=IN_PROCESS_URL,
                      transport=httpx.ASGITransport(app=app), **client_options)
