"""The simulator over real sockets: `running_server` and the `serve-demo` command."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from anam_notebooks import cli
from anam_notebooks.simulator import DEMO_API_KEY, create_app, running_server

AUTH = {"Authorization": f"Bearer {DEMO_API_KEY}"}


def test_running_server_serves_real_http_and_stops(fleet):
    app = create_app(fleet)
    with running_server(app) as base_url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        with httpx.Client(base_url=base_url, headers=AUTH) as client:
            page = client.get("/v1/sessions", params={"perPage": 100, "page": 2})
            one = client.get(f"/v1/sessions/{fleet.sessions[0]['id']}")
            refused = client.get("/v1/sessions", headers={"Authorization": "Bearer nope"})
    assert page.status_code == 200 and [r["id"] for r in page.json()["data"]] == \
        [r["id"] for r in fleet.sessions[100:200]]
    assert one.json() == fleet.sessions[0]
    assert refused.status_code == 401
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/openapi.json", timeout=2)


def test_loopback_fixture(loopback_server, sim_app):
    base_url = loopback_server(sim_app)
    assert httpx.get(base_url + "/v1/sessions", headers=AUTH).json()["meta"]["total"] == 3000


def read_until(process: subprocess.Popen, pattern: str, timeout: float = 30.0) -> tuple[re.Match, str]:
    """Lines of the child's stdout until one matches `pattern` (fails after `timeout`)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen, deadline = "", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen += line
        if match := re.search(pattern, line):
            return match, seen
    pytest.fail(f"no line matching {pattern!r}; output so far:\n{seen}")


@pytest.mark.parametrize("key_args, expected_key", [
    ([], DEMO_API_KEY), (["--api-key", "s3cret-team-key"], "s3cret-team-key")])
def test_serve_demo_command_answers_then_terminates(key_args, expected_key):
    process = subprocess.Popen(
        [sys.executable, "-m", "anam_notebooks.cli", "serve-demo", "--port", "0", "--sessions", "400",
         "--span", "24h", "--seed", "3", *key_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        match, seen = read_until(process, r"ANAM_API_URL=(http://127\.0\.0\.1:\d+) ANAM_API_KEY=(.+)$")
        url, shown = match.group(1), match.group(2)
        response = httpx.get(url + "/v1/sessions", headers={"Authorization": f"Bearer {expected_key}"})
        assert response.status_code == 200 and response.json()["meta"]["total"] == 400
        assert shown.strip() == ("<the key you gave>" if key_args else DEMO_API_KEY)
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert "s3cret-team-key" not in seen
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean stop


def test_serve_demo_rejects_bad_knobs_and_unknown_flags(capsys):
    for argv in (["serve-demo", "--fault-rate", "2"], ["serve-demo", "--bogus"],
                 ["serve-demo", "--port", "70000"], ["serve-demo", "--span", "soon"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
    errors = capsys.readouterr().err
    assert "fault_rate=2.0" in errors and "--bogus" in errors and "70000" in errors and "soon" in errors


def test_running_server_reports_a_port_it_cannot_bind(sim_app):
    with running_server(sim_app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match=f"cannot serve the simulator on 127.0.0.1:{port}"):
            with running_server(create_app(sessions=10), port=port, startup_timeout=5):
                pass


def test_serve_demo_on_a_busy_port_says_so(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve-demo", "--port", str(port), "--sessions", "10"]) == 1
    assert f"cannot serve the simulator on 127.0.0.1:{port}" in capsys.readouterr().err


def test_served_connections_send_small_responses_without_waiting_for_acks():
    """Nagle's algorithm plus delayed ACKs would hold every small response ~40 ms: the
    listening socket disables it, and accepted connections inherit the option."""
    from anam_notebooks.simulator.server import bind_socket

    listener = bind_socket("127.0.0.1", 0)
    try:
        listener.listen()
        peer = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        accepted.close()
        peer.close()
    finally:
        listener.close()
