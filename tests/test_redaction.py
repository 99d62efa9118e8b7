"""Redaction no path can bypass, and the written contract of what a client is.

A fleet whose customer- and user-written text is unique markers (`plant_marker_text`) is read
through `RedactedClient` on every path (records, pages, the cache cold and warm, transcripts,
the lookup and explorer widgets): no marker comes out, while the same cache read afterwards
without redaction returns every raw value. A wrapper that implements the contract partially is
refused by mypy and at run time instead of silently forwarding.
"""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

import anam_notebooks as an
from anam_notebooks.api.source import AsyncSessionSource, SessionSource
from anam_notebooks.data.columns import SESSION_COLUMNS
from anam_notebooks.simulator import MARKER_PREFIX, create_app, demo_client, generate_fleet, plant_marker_text
from anam_notebooks.views.masking import FRAME_KEPT, FRAME_MASKED, MASKING, RedactedClient, masking_table

ROOT = Path(__file__).parent.parent
END = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
MARKER = re.compile(MARKER_PREFIX + r"[A-Z]+\w*")


def leaks(*texts: str) -> list[str]:
    return sorted({m for text in texts for m in MARKER.findall(text)})


def frame_text(frame: pd.DataFrame) -> str:
    return frame.to_csv() + json.dumps(frame.attrs, default=str)


@pytest.fixture(scope="module")
def marked():
    return plant_marker_text(generate_fleet(seed=4, sessions=600, span="24h", end=END))


@pytest.fixture
def app(marked):
    return create_app(marked)


@pytest.fixture
def client(app):
    with demo_client(app) as raw:
        yield raw


def test_the_marker_fleet_carries_every_kind_of_free_text(marked):
    text = json.dumps(marked.sessions) + json.dumps([marked.transcripts[s] for s in list(marked.transcripts)[:20]])
    kinds = {re.match(r"[A-Z]+", m[len(MARKER_PREFIX):]).group(0) for m in leaks(text)}
    assert kinds >= {"LABEL", "PERSONA", "PROMPT", "PERSONALITY", "FILLER", "PERSONAMETA", "KNOWLEDGE",
                     "KNOWLEDGENAME", "TOOL", "TOOLNAME", "CLIENTMETA", "LINE"}


# ------------------------------------------------------------------------------ the contract

def test_the_clients_implement_the_contract(client):
    assert isinstance(client, SessionSource) and client.redaction is None
    redacted = RedactedClient(client)
    assert isinstance(redacted, SessionSource) and redacted.redaction is not None
    assert redacted.redaction.raw is client
    assert RedactedClient(redacted).redaction.raw is client   # never masked twice
    aclient = an.AsyncAnamClient(api_key="k", base_url="http://127.0.0.1:9")
    assert isinstance(aclient, AsyncSessionSource) and not isinstance(aclient, SessionSource)


class Forwarding:
    """The old way: a few methods written out, the rest forwarded by `__getattr__`."""

    def __init__(self, client):
        self._client = client
        self.base_url, self.source = client.base_url, client.source

    def get_session(self, session_id):
        return self._client.get_session(session_id)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_partial_wrapper_is_refused_at_run_time_naming_what_it_lacks(client):
    wrapper = Forwarding(client)
    sessions = an.fetch_sessions(client, progress=False)
    for call in (lambda: an.fetch_sessions(wrapper, progress=False),
                 lambda: an.fetch_transcripts(wrapper, sessions, progress=False),
                 lambda: an.SessionLookup(wrapper),
                 lambda: an.SessionExplorer(sessions, client=wrapper),
                 lambda: RedactedClient(wrapper)):
        with pytest.raises(TypeError, match=r"iter_session_pages.*iter_transcripts.*__getattr__"):
            call()


MYPY_SNIPPET = '''
from collections.abc import Iterator
from typing import Any

import anam_notebooks as an
from anam_notebooks.api.paging import Batch


class Partial:
    base_url: str = "http://127.0.0.1"
    source: str = "here"
    concurrency: int = 1

    def get_session(self, session_id: Any) -> dict[str, Any]:
        return {}

    def get_transcript(self, session_id: Any) -> dict[str, Any]:
        return {}

    def get_recording_url(self, session_id: Any) -> str:
        return ""

    def list_sessions(self, page: int = 1, per_page: int = 100, search: str | None = None,
                      persona_id: Any = None, api_key_id: Any = None) -> dict[str, Any]:
        return {}

    def iter_sessions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return iter(())

    def close(self) -> None:
        pass


class Complete(Partial):
    redaction = None

    def iter_session_pages(self, **filters: Any) -> Iterator[Batch]:
        return iter(())

    def iter_transcripts(self, session_ids: Any) -> Iterator[tuple[str, dict[str, Any] | Exception]]:
        return iter(())


an.fetch_sessions(Complete())
an.fetch_sessions(an.RedactedClient(an.connect()))
an.SessionLookup(Complete())
an.fetch_sessions(Partial())  # refused
an.SessionLookup(Partial())   # refused
'''


def test_a_partial_wrapper_is_refused_by_mypy_at_the_call_site(tmp_path):
    """(mypy lets a class with `__getattr__` pass for any protocol: `check_source` refuses it at
    run time, see above.)"""
    from mypy import api

    snippet = tmp_path / "wrapper.py"
    snippet.write_text(textwrap.dedent(MYPY_SNIPPET).lstrip("\n"))
    refused = [n for n, line in enumerate(snippet.read_text().splitlines(), 1) if line.endswith("# refused")]
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n")
    out, err, status = api.run(["--config-file", str(config), "--cache-dir", str(ROOT / ".mypy_cache"),
                                "--no-error-summary", str(snippet)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out + err
    assert [int(line.split(":")[1]) for line in errors] == refused, out
    assert all('"Partial"' in line and "SessionSource" in line for line in errors), out


# ------------------------------------------------------------------------------ one gate on every path

def test_records_pages_and_transcripts_come_masked(client, marked):
    redacted = RedactedClient(client)
    sid = next(s for s in marked.transcripts if marked.by_id[s].get("clientLabel"))
    texts = [json.dumps(redacted.get_session(sid)), json.dumps(redacted.get_transcript(sid)),
             json.dumps(redacted.list_sessions(per_page=100)),
             json.dumps([r for batch in redacted.iter_session_pages() for r in batch]),
             json.dumps(list(redacted.iter_sessions())),
             json.dumps([t for _, t in redacted.iter_transcripts(list(marked.transcripts)[:50])])]
    assert leaks(*texts) == []
    record = redacted.get_session(sid)
    raw = client.get_session(sid)
    kept = ("id", "startTime", "exitStatus", "engineHost", "engineVersion", "organizationId")
    assert {k: record[k] for k in kept} == {k: raw[k] for k in kept}
    for key in ("modelName", "format"):
        assert record["personaConfig"]["llmConfig"][key] == raw["personaConfig"]["llmConfig"][key]
    assert record["personaConfig"]["ttsProvider"] == raw["personaConfig"]["ttsProvider"]
    assert record["clientMetadata"]["userAgent"] == raw["clientMetadata"]["userAgent"]
    assert [m["role"] for m in redacted.get_transcript(sid)["messages"]] == \
        [m["role"] for m in raw_transcript(client, sid)["messages"]]
    with pytest.raises(PermissionError):
        redacted.get_recording_url(sid)


def raw_transcript(client, sid):
    return client.get_transcript(sid)


@pytest.mark.parametrize("first", ["redacted", "raw"])
def test_the_cache_holds_raw_data_and_a_redacted_reader_never_sees_it(app, client, marked, tmp_path, first):
    """Cold and warm, in both orders: a redacted read through the cache shows no marker, and an
    unredacted read of the same cache afterwards returns every raw label, name and line."""
    redacted = RedactedClient(client)
    stats = app.state.simulator.stats
    raw_labels = {r["clientLabel"] for r in marked.sessions if r.get("clientLabel")}
    raw_lines = {m["message"] for t in marked.transcripts.values() for m in t["messages"]}

    def read(reader):
        df = an.fetch_sessions(reader, cache=tmp_path, progress=False)
        ended = df[~df["is_active"]]
        stats.clear()
        turns = an.fetch_transcripts(reader, ended, cache=tmp_path, progress=False)
        return df, turns, stats.get("total", 0)

    order = [redacted, client] if first == "redacted" else [client, redacted]
    results = {}
    for step, reader in enumerate(order * 2):   # cold, then warm, for each
        df, turns, requests = read(reader)
        results.setdefault(reader is redacted, []).append((df, turns, requests))
        if reader is redacted:
            assert leaks(frame_text(df), frame_text(turns)) == [], step
            assert df["client_label"].dropna().str.match(r"label-[0-9a-f]{8}$").all()
            assert df["persona_name"].dropna().astype(str).str.match(r"persona-[0-9a-f]{8}$").all()
            assert (turns["text"].dropna() == an.widgets.REDACTED).all() and len(turns)
        else:
            assert set(df["client_label"].dropna()) == raw_labels
            assert set(turns["text"].dropna()) <= raw_lines and len(set(turns["text"])) > 100
        if step >= 1:
            assert requests == 0, (step, requests)   # every transcript came from the cache
    (masked_df, masked_turns, _), (raw_df, raw_turns, _) = results[True][-1], results[False][-1]
    # The same sessions and turns either way; only what a person wrote differs.
    assert masked_df.index.equals(raw_df.index)
    kept = sorted(FRAME_KEPT & set(raw_df.columns) - {"stale_active"})
    pd.testing.assert_frame_equal(masked_df[kept], raw_df[kept], check_categorical=False)
    assert raw_df.groupby("client_label").ngroups == masked_df.groupby("client_label").ngroups
    pd.testing.assert_frame_equal(masked_turns.drop(columns="text"), raw_turns.drop(columns="text"))
    # The files of the cache hold raw values only.
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*.parquet"))
    assert b"label-" not in on_disk and b"[REDACTED]" not in on_disk and MARKER_PREFIX.encode() in on_disk


def test_the_lookup_and_the_explorer_show_no_marker(client, marked):
    redacted = RedactedClient(client)
    raw_df = an.fetch_sessions(client, progress=False)
    sid = next(s for s in marked.transcripts if marked.by_id[s].get("clientLabel") and marked.by_id[s].get("endTime"))
    lookup = an.SessionLookup(redacted).lookup(sid)
    assert lookup.transcript_df is not None and len(lookup.transcript_df)
    label = marked.by_id[sid]["clientLabel"]
    search = an.SessionLookup(redacted).lookup(label)     # a label typed in: the echo is masked too
    explorer = an.SessionExplorer(raw_df, client=redacted)   # a raw frame is masked on the way in
    explorer.open_session(sid)
    options = json.dumps([list(map(str, d.options)) for d in explorer.dropdowns.values()])
    shown = [lookup._repr_html_(), search._repr_html_(), explorer._repr_html_(), options,
             json.dumps(lookup.session), frame_text(lookup.transcript_df)]
    assert leaks(*shown) == []
    assert "sessions match 'label-" in unescape(search.message.value) and sid in lookup._repr_html_()
    plain = an.SessionLookup(client).lookup(sid)   # the check can fail
    assert label in plain._repr_html_()


def test_every_contract_column_is_either_kept_or_masked():
    assert set(SESSION_COLUMNS) <= FRAME_KEPT | set(FRAME_MASKED)
    assert not FRAME_KEPT & set(FRAME_MASKED)


def test_the_readme_and_the_redact_docstring_carry_the_masking_table():
    import inspect

    table = masking_table()
    assert len(table.splitlines()) == len(MASKING) + 2
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in inspect.cleandoc(an.setup_notebook.__doc__ or "")


# ------------------------------------------------------------------------------ every curated notebook

@pytest.mark.notebook
@pytest.mark.slow
def test_redacted_reports_of_every_notebook_write_no_marker_cache_off_cold_and_warm(tmp_path):
    """`anam-notebooks report NB --redact` for every curated notebook against a marker fleet on a
    loopback server, with the cache off, cold and warm: no marker in any byte written (HTML,
    findings JSON, executed notebook) or logged. A notebook run afterwards without redaction
    through the same cache shows the raw labels and transcript lines (the check can fail)."""
    import os
    import subprocess
    import sys

    from anam_notebooks.reports.execute import notebook_parameters
    from anam_notebooks.reports.report import simulator_environment

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    fleet = plant_marker_text(generate_fleet(seed=9, sessions=3000, span="24h"))
    searched = next(r["clientLabel"] for r in fleet.sessions if r.get("clientLabel"))
    cache = tmp_path / "cache"

    def report(notebook: Path, out: Path, env: dict[str, str], *options: str) -> str:
        run = subprocess.run([sys.executable, "-m", "anam_notebooks", "report", str(notebook), "-o", str(out),
                              *options], env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
        assert run.returncode in (0, 3), run.stderr[-3000:]
        return run.stdout + run.stderr

    with simulator_environment(fleet) as (env, _):
        for label, options in (("off", ("-p", "cache", "False")), ("cold", ("-p", "cache", str(cache))),
                               ("warm", ("-p", "cache", str(cache)))):
            out = tmp_path / f"redacted-{label}"
            # Warm runs also search for a customer's label: papermill keeps every parameter in the
            # executed notebook, so the value must be masked there as in the header and findings.
            logged = [report(nb, out, env, "--redact", *options,
                             *(("-p", "search", searched) if label == "warm" and "search" in notebook_parameters(nb)
                               else ())) for nb in notebooks]
            written = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*") if p.is_file()}
            expected = {f"{nb.stem}.{ext}" for nb in notebooks for ext in ("html", "findings.json", "ipynb")}
            assert expected <= set(written), sorted(written)
            found = {name: leaks(text) for name, text in written.items() if leaks(text)}
            assert found == {} and leaks(*logged) == [], (label, found, leaks(*logged))
        out = tmp_path / "plain"   # the lookup notebook shows a label and transcript lines
        report(ROOT / "notebooks" / "01_session_lookup.ipynb", out, env, "-p", "cache", str(cache))
    plain = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*") if p.is_file()}
    shown = leaks(*plain.values())
    assert any("LABEL" in m for m in shown) and any("LINE" in m for m in shown), shown[:20]
    assert MARKER_PREFIX.encode() in b"".join(p.read_bytes() for p in cache.rglob("*.parquet"))


def test_a_store_synced_through_a_redacting_client_still_holds_raw_records(client, marked, tmp_path):
    from anam_notebooks.sync import refresh_store

    org = marked.sessions[0]["organizationId"]
    store = an.SessionStore(tmp_path, base_url=client.base_url, organization_id=org)
    refresh_store(store, RedactedClient(client))
    assert set(store.load()["client_label"].dropna()) == {r["clientLabel"] for r in marked.sessions
                                                          if r.get("clientLabel")}
    synced = an.sync_sessions(RedactedClient(client), cache=tmp_path / "synced", progress=False)
    assert set(an.session_dataset(synced.path).to_frame()["client_label"].dropna()) == {
        r["clientLabel"] for r in marked.sessions if r.get("clientLabel")}
