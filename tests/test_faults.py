"""A broken server cannot hang the client, exhaust its memory or take the key. Every test talks
to a hostile server over a real socket (`_hostile.HostileServer`); memory is the peak RSS
(VmHWM) of a child process doing the reading."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from _hostile import HostileServer, Request, head, page_of, respond

from anam_notebooks import (
    AnamAPIError,
    AnamConnectionError,
    ConfigurationError,
    PaginationError,
    fetch_sessions,
)
from anam_notebooks.api.client import AnamClient, Backoff
from anam_notebooks.api.http import Secret

KEY = "sk-hostile-0123456789abcdefGHIJKLMN"


def no_key_sent(server: HostileServer) -> bool:
    return all(KEY not in json.dumps(r.headers) for r in server.requests)


# -- deadlines ---------------------------------------------------------------------------------

async def trickle(request: Request, writer: asyncio.StreamWriter) -> None:
    """A valid page, one byte a second (every byte resets a per-read timeout)."""
    body = json.dumps({"data": page_of(1, 5), "meta": {"total": 5, "lastPage": 1}}).encode()
    writer.write(head(headers={"Content-Type": "application/json", "Content-Length": str(len(body))}))
    for byte in body:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1)


def test_a_page_sent_a_byte_a_second_fails_within_the_timeout():
    with HostileServer(trickle) as server, AnamClient(KEY, server.url, timeout=2, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(AnamConnectionError) as info:
            fetch_sessions(client, progress=False)
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    message = str(info.value)
    assert f"{server.url}/v1/sessions?page=1" in message and "within 2 s" in message


def test_a_retried_call_ends_within_attempts_times_timeout_plus_the_waits():
    with HostileServer(trickle) as server, AnamClient(KEY, server.url, timeout=1, max_retries=2,
                                                      backoff=Backoff(initial=0.2)) as client:
        started = time.monotonic()
        with pytest.raises(AnamConnectionError, match="after 3 attempts"):
            client.list_sessions()
        elapsed = time.monotonic() - started
    assert len(server.requests) == 3
    assert elapsed < 3 * 1 + (0.2 + 0.4) + 2, elapsed  # three deadlines, two waits, some slack


# -- paging that makes no progress ------------------------------------------------------------

async def same_page_no_meta(request: Request, writer: asyncio.StreamWriter) -> None:
    respond(writer, {"data": page_of(1)})


def test_pages_without_meta_repeating_the_same_sessions_end_with_an_error():
    with HostileServer(same_page_no_meta) as server, AnamClient(KEY, server.url) as client:
        started = time.monotonic()
        with pytest.raises(PaginationError, match="stopped making progress") as info:
            fetch_sessions(client, progress=False)
        elapsed = time.monotonic() - started
    assert elapsed < 10 and len(server.requests) < 50, (elapsed, len(server.requests))
    assert len(info.value.frame) == 100 and len(info.value.ids) == 100  # what was read is kept


@pytest.mark.parametrize("meta, implausible", [
    ({"total": -5, "lastPage": -1}, False),                 # negative: read as absent
    ({"total": "250", "lastPage": 2.5}, False),             # not integers: read as absent
    ({"total": 10**12, "lastPage": 10**10}, True),          # beyond any list
    ({"total": 250, "lastPage": 10**8}, True),              # more pages than sessions
    ({"total": 5000, "lastPage": 3}, True),                 # more sessions than the pages hold
    ({"total": 250, "lastPage": 3}, False),                 # the truth
], ids=["negative", "not-integers", "beyond-any-list", "absurd-last-page", "does-not-fit", "true"])
def test_implausible_meta_is_read_as_absent_and_the_list_read_whole(meta, implausible, caplog):
    async def listing(request: Request, writer: asyncio.StreamWriter) -> None:
        respond(writer, {"data": page_of(request.page)[: max(0, 250 - (request.page - 1) * 100)],
                         "meta": {**meta, "currentPage": request.page}})

    with HostileServer(listing) as server, AnamClient(KEY, server.url, max_retries=0) as client:
        ids = [s["id"] for s in client.iter_sessions()]
    assert ids == [s["id"] for page in (1, 2, 3) for s in page_of(page)][:250]
    assert ("meta is implausible" in caplog.text) == implausible
    assert len(server.requests) <= 3 + 8  # page by page to the short one, not a planned range


READER = f"""
import json, sys, time
from anam_notebooks import AnamError
from anam_notebooks.api.client import AnamClient

url, seconds = sys.argv[1], float(sys.argv[2])
outcome, count, started = "ran out of time", 0, time.monotonic()
try:
    with AnamClient({KEY!r}, url, max_retries=0, timeout=30) as client:
        for _ in client.iter_sessions():
            count += 1
            if time.monotonic() - started > seconds:
                break
except AnamError as exc:
    outcome = f"{{type(exc).__name__}}: {{exc}}"
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({{"outcome": outcome, "count": count, "peak": peak,
                  "elapsed": time.monotonic() - started}}))
"""


def read_in_child(url: str, seconds: float) -> dict:
    """Iterate the list in a child process for at most `seconds`; its outcome and peak RSS."""
    child = subprocess.run([sys.executable, "-c", READER, url, str(seconds)], capture_output=True,
                           text=True, timeout=seconds + 60)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def absurd_meta(repeat: bool):
    async def behave(request: Request, writer: asyncio.StreamWriter) -> None:
        respond(writer, {"data": page_of(1 if repeat else request.page),
                         "meta": {"total": 10**12, "lastPage": 10**10, "currentPage": request.page}})
    return behave


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc")
def test_an_absurd_total_repeating_one_page_ends_quickly_in_bounded_memory():
    with HostileServer(absurd_meta(repeat=True)) as server:
        result = read_in_child(server.url, 20)
    assert result["outcome"].startswith("PaginationError") and "progress" in result["outcome"]
    assert result["elapsed"] < 10 and result["count"] == 100
    assert result["peak"] < 300 * 2**20, result


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc")
def test_an_absurd_total_over_an_endless_list_pages_lazily_in_bounded_memory():
    """Every page new, meta claiming 10**12 sessions: paged as a list without totals for 20 s
    (the server never ends it), memory following the ids read, not the claimed total."""
    with HostileServer(absurd_meta(repeat=False)) as server:
        result = read_in_child(server.url, 20)
    assert result["outcome"] == "ran out of time" and result["count"] > 10_000, result
    assert result["peak"] < 300 * 2**20, result


# -- response size --------------------------------------------------------------------------

BIG_PAGE = 600 * 2**20


async def enormous_page(request: Request, writer: asyncio.StreamWriter) -> None:
    """600 MB of valid JSON, made up as it is sent (chunked: no length announced)."""
    writer.write(head(headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
    record = json.dumps(page_of(1, 1)[0]).encode() + b","
    chunk = b'{"data": [' + record * (65536 // len(record))
    sent = 0
    while sent < BIG_PAGE:
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        sent += len(chunk)
        chunk = record * (65536 // len(record))
    tail = json.dumps(page_of(1, 1)[0]).encode() + b"]}"
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc")
def test_a_600_mb_page_fails_with_the_size_error_in_bounded_memory():
    with HostileServer(enormous_page) as server:
        result = read_in_child(server.url, 60)
    outcome = result["outcome"]
    assert outcome.startswith("AnamAPIError") and "max_response_bytes=67,108,864" in outcome, outcome
    assert "raise the limit" in outcome
    assert result["peak"] < 500 * 2**20, result


def test_a_declared_length_beyond_the_limit_is_refused_before_reading():
    async def declared(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(headers={"Content-Type": "application/json", "Content-Length": str(10**9)}))
        writer.write(b'{"data": [')

    with HostileServer(declared) as server, AnamClient(KEY, server.url, max_response_bytes=2**20,
                                                       max_retries=0, timeout=5) as client:
        with pytest.raises(AnamAPIError, match=r"max_response_bytes=1,048,576.*declares 1,000,000,000"):
            client.list_sessions()


def test_max_response_bytes_is_checked():
    with pytest.raises(ConfigurationError, match="max_response_bytes=0"):
        AnamClient(KEY, "https://api.test", max_response_bytes=0)


# -- the key goes only where it should ---------------------------------------------------------

def test_a_redirect_to_another_host_is_an_error_and_sends_nothing_there():
    async def elsewhere_behaviour(request: Request, writer: asyncio.StreamWriter) -> None:
        respond(writer, {"data": []})

    with HostileServer(elsewhere_behaviour) as elsewhere:
        target = f"{elsewhere.url}/v1/sessions?token={KEY.upper()}"

        async def redirect(request: Request, writer: asyncio.StreamWriter) -> None:
            writer.write(head(302, "Found", {"Location": target, "Content-Length": "0"}))

        with HostileServer(redirect) as server, AnamClient(KEY, server.url, max_retries=0) as client:
            with pytest.raises(AnamAPIError) as info:
                fetch_sessions(client, progress=False)
    message = str(info.value)
    assert "redirect" in message and elsewhere.url in message and "302" in message
    assert KEY.upper() not in message and "[REDACTED]" in message
    assert elsewhere.connections == 0


def machine_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_plain_http_to_another_machine_is_refused_before_any_connection():
    async def anything(request: Request, writer: asyncio.StreamWriter) -> None:
        respond(writer, {"data": [], "meta": {"total": 0, "lastPage": 1}})

    address = machine_address()
    if address is None:  # no other address: the refusal still happens before any connection
        with pytest.raises(ConfigurationError, match="allow_insecure_http=True"):
            AnamClient(KEY, "http://api.internal.example:8080")
        return
    with HostileServer(anything, host=address) as server:
        with pytest.raises(ConfigurationError, match="plain http:// to another machine") as info:
            AnamClient(KEY, server.url)
        assert "allow_insecure_http=True" in str(info.value)
        assert server.connections == 0 and no_key_sent(server)
        with AnamClient(KEY, server.url, allow_insecure_http=True) as client:  # the explicit opt-in
            client.list_sessions()
        assert server.connections == 1


@pytest.mark.parametrize("url", ["http://localhost:8765", "http://127.0.0.1:1", "http://127.1.2.3",
                                 "http://[::1]:8000", "http://0.0.0.0:8765", "https://api.anam.ai"])
def test_loopback_http_and_any_https_are_allowed(url):
    assert AnamClient(KEY, url).base_url == url


@pytest.mark.parametrize("url", ["http://api.anam.ai", "http://10.0.0.7:8080", "http://localhost.evil.example"])
def test_plain_http_elsewhere_needs_the_explicit_opt_in(url):
    with pytest.raises(ConfigurationError, match="allow_insecure_http=True"):
        AnamClient(KEY, url)
    assert AnamClient(KEY, url, allow_insecure_http=True).base_url == url


def test_credentials_in_the_base_url_are_refused_and_never_shown():
    async def anything(request: Request, writer: asyncio.StreamWriter) -> None:
        respond(writer, {"data": []})

    with HostileServer(anything) as server:
        url = server.url.replace("http://", "http://admin:hunter2-secret@")
        with pytest.raises(ConfigurationError, match="user name or password") as info:
            AnamClient(KEY, url)
        assert "hunter2" not in str(info.value) and server.url in str(info.value)
        assert server.connections == 0
    with pytest.raises(ConfigurationError) as info:
        AnamClient(KEY, "https://user:hunter2-secret@api.anam.ai")
    assert "hunter2" not in str(info.value)


def test_credentials_in_anam_api_url_never_reach_a_report_source_line(monkeypatch):
    from anam_notebooks import connect
    from anam_notebooks.reports.report import configured_source

    monkeypatch.setenv("ANAM_API_URL", "https://user:hunter2-secret@api.anam.ai/")
    monkeypatch.setenv("ANAM_API_KEY", KEY)
    assert configured_source() == "Anam API at https://****@api.anam.ai"
    with pytest.raises(ConfigurationError, match="user name or password") as info:
        connect()
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("echo", [str.upper, lambda k: k[:-1], lambda k: k[5:19], lambda k: k.swapcase()],
                         ids=["upper", "one-short", "fragment", "swapcase"])
def test_a_server_echoing_the_key_altered_does_not_get_it_into_the_error(echo):
    async def echoing(request: Request, writer: asyncio.StreamWriter) -> None:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        respond(writer, {"message": f"bad key {echo(sent)} (check it)"}, status=400, reason="Bad Request")

    with HostileServer(echoing) as server, AnamClient(KEY, server.url) as client:
        with pytest.raises(AnamAPIError) as info:
            client.list_sessions()
    message = str(info.value)
    assert "bad key [REDACTED] (check it)" in message, message
    lowered = message.lower()
    assert not any(KEY.lower()[i:i + 8] in lowered for i in range(len(KEY) - 7))


def test_the_scrubber_blanks_long_fragments_in_any_case_and_leaves_other_text():
    secret = Secret(KEY)
    assert secret.scrub(f"x{KEY}y") == "x[REDACTED]y"
    assert secret.scrub(KEY[3:11].upper() + " and " + KEY[-9:]) == "[REDACTED] and [REDACTED]"
    assert secret.scrub(KEY[:7]) == KEY[:7]  # seven characters of a key are not the key
    assert secret.scrub("nothing to see") == "nothing to see"


# -- terminal output ------------------------------------------------------------------------------

HOSTILE_TEXT = "pod \x1b]0;owned\x07eu-7\x1b[2J \u202eKO\u202c\u200b\r ok\x9b31m"


def test_the_cli_prints_no_control_or_bidi_characters_from_data(tmp_path, capsys):
    from anam_notebooks import cli
    from anam_notebooks.reports.report import Report

    findings = tmp_path / "01.findings.json"
    findings.write_text("{}")
    standing = Report(notebook=tmp_path / "01.ipynb", executed=tmp_path / "01.out.ipynb",
                      html=tmp_path / "01.html", findings_json=findings,
                      findings=({"sentence": f"Failures concentrate on {HOSTILE_TEXT}"},))
    assert cli._print_reports([standing], fail_on_findings=True) == cli.EXIT_FINDINGS
    failed = Report(notebook=tmp_path / "02.ipynb", executed=tmp_path / "02.out.ipynb", html=None,
                    error=f"cell 3 raised: bad label {HOSTILE_TEXT}\nsecond line")
    assert cli._print_reports([failed]) == cli.EXIT_NOTEBOOK_FAILED
    out, err = capsys.readouterr()
    shown = out + err
    assert not any(ord(c) < 32 and c not in "\n" or 0x7f <= ord(c) <= 0x9f or c in "\u202e\u202c\u200b"
                   for c in shown), repr(shown)
    assert "Failures concentrate on pod ]0;ownedeu-7[2J KO ok31m" in err
    assert "bad label pod" in err and "\nsecond line" in err


def test_every_test_the_faults_page_cites_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "faults.md").read_text()
    cited = re.findall(r"`(?:tests/)?(test_\w+\.py)(?:::(test_\w+))?`", page)
    assert len(cited) >= 15
    for file, name in cited:
        source = (root / "tests" / file).read_text()
        assert not name or re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{file}::{name}"
