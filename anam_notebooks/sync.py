"""Filling and refreshing the session store from a client: the network side of the cache.

The store (`data.store`) keeps files; this module decides what to ask the API for and hands
the answers to it in chunks, so memory follows one chunk, never the whole list:

- **first read** (or a read further back than the cache reaches): the list is read newest
  first; every `CHECKPOINT_ROWS` sessions become Parquet parts and a checkpoint of the list
  positions stored, so a killed run resumes where it stopped, with or without `since`;
- **refresh**: the head of the list is read far enough to cover the sessions still active
  last time, a bounded number of stragglers are re-read one by one, and only the start-date
  partitions touched are rewritten. Sessions "active" for longer than any session lasts are
  flagged `stale_active` and no longer re-read.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .api.errors import AnamAPIError, AnamConnectionError, PaginationError
from .api.paging import Coverage
from .api.source import SessionSource
from .data.sessions import concat_sessions, sessions_frame
from .data.store import PER_PAGE, UNKNOWN_DATE, CacheFileWarning, SessionStore, cache_directory

logger = logging.getLogger("anam_notebooks")

CHECKPOINT_ROWS = 20_000  # sessions read between two checkpoints of a first read
FRAME_ROWS = 2_000  # raw records held before they become (much smaller) frame rows
HEAD_PAGES = 30  # list pages a refresh may read to cover sessions that were active
STRAGGLERS = 20  # single GETs a refresh may spend on active sessions the head did not cover


@dataclass
class SyncSummary:
    """What one sync did, and what the store holds after it.

    Attributes
    ----------
    path : Path
        The dataset directory (give it, or its cache directory, to `session_dataset`).
    stored : int
        Rows in the store's part files.
    covered_since : Timestamp, None or False
        Every session started at/after it is stored (None: all history; False: nothing yet).
    read : int
        Sessions read from the list by this sync.
    resumed : int
        Sessions an interrupted earlier run had stored (0 when nothing was resumed).
    head_sessions, rereads, deferred, stale_active : int
        The refresh: sessions read at the head, single re-reads, active sessions left for the
        next refresh, sessions flagged stale_active.
    """

    path: Path
    stored: int = 0
    covered_since: pd.Timestamp | None | bool = False
    read: int = 0
    resumed: int = 0
    head_sessions: int = 0
    rereads: int = 0
    deferred: int = 0
    stale_active: int = 0


def open_store(cache: bool | str | os.PathLike[str], client: SessionSource) -> SessionStore:
    """The store for `client`'s API and organisation: `cache` True means default_cache_dir(),
    otherwise it is the directory. The organisation is read from the newest session."""
    directory = cache_directory(cache)
    page = client.list_sessions(page=1, per_page=1)
    data = page.get("data") if isinstance(page, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    organization = first.get("organizationId")
    return SessionStore(directory, base_url=client.base_url,
                        organization_id=organization if isinstance(organization, str) else None)


def refresh_store(store: SessionStore, client: SessionSource, *, since: datetime | pd.Timestamp | None = None,
                  progress: bool = False) -> SyncSummary:
    """Bring `store` up to date with as few requests as it can; no frame of the store is built.

    Parameters
    ----------
    store : SessionStore
        The store to fill.
    client : SessionSource
        The client to read with (its `iter_session_pages`, `get_session`); a redacting client
        is read through its raw source, so the store never holds masked records (mask what is
        read from it with ``client.redaction``, as `fetch_sessions` does).
    since : datetime or Timestamp, optional
        How far back the store must reach; None means all history. When it does not reach
        that far yet, the list is read back that far, checkpointing as it goes.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SyncSummary
        What was read and what the store now holds.

    Raises
    ------
    PaginationError
        When list pages fail after retries; what was read is stored first.
    """
    if client.redaction is not None:  # the store holds raw records, whoever asks
        client = client.redaction.raw
    since_ts = None if since is None else _utc(since)
    summary = SyncSummary(store.path)
    with _arrow_memory_given_back():
        covered = store.covered_since()
        damaged = store.quarantine_damaged() if covered is not False else []
        if damaged:  # parts that failed a check: their start dates are read again in this call
            _refetch_quarantined(store, client, damaged, covered, progress, summary)
            covered = store.covered_since()
        resume = store.checkpoint()
        if resume is not None or covered is False or _reaches_further(since_ts, covered):
            _backfill(store, client, since_ts, resume, progress, summary)
            if resume is not None:  # sessions stored by the interrupted run may have ended since
                _refresh_head(store, client, progress, summary)
        else:
            _refresh_head(store, client, progress, summary)
    summary.stored = store.stored_sessions()
    summary.covered_since = store.covered_since()
    return summary


@contextmanager
def _arrow_memory_given_back() -> Iterator[None]:
    """Arrow's buffers from the system allocator while a sync runs, the previous pool after.

    The default pool of the pyarrow wheels (mimalloc) keeps the pages of freed buffers for
    reuse, per thread; a sync allocates and frees one chunk after another (frames, Parquet parts,
    a merge), and those kept pages made up a quarter of its peak memory, more the more chunks it
    wrote. The system allocator gives large buffers back when they are freed, so memory follows
    one chunk. Buffers remember their pool, so the switch is safe for data made before or after.
    """
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _refetch_quarantined(store: SessionStore, client: SessionSource, partitions: list[str],
                         covered: pd.Timestamp | None | bool, progress: bool, summary: SyncSummary) -> None:
    """Read the quarantined partitions' sessions again: the list back to the oldest of their
    start dates (all of it for 'unknown'), then the coverage mark as it was before."""
    dates = [pd.Timestamp(p, tz="UTC") for p in partitions if p != UNKNOWN_DATE]
    since = None if UNKNOWN_DATE in partitions or not dates else min(dates)
    _backfill(store, client, since, None, progress, summary)
    store.finish([], covered if covered is not False else since)


def _backfill(store: SessionStore, client: SessionSource, since: pd.Timestamp | None,
              resume: list[tuple[int, int]] | None, progress: bool, summary: SyncSummary) -> None:
    """Read the list back to `since` (None: all), storing parts and a checkpoint every
    CHECKPOINT_ROWS sessions; `resume` skips the positions an earlier run stored."""
    done = Coverage(resume or [])
    touched: set[str] = set()
    pending: list[dict[str, Any]] = []  # raw records: a few KB each, so only FRAME_ROWS of them
    frames: list[pd.DataFrame] = []  # about 250 B a session, until CHECKPOINT_ROWS are stored
    spans: list[tuple[int, int]] = []

    def to_frame() -> None:
        frames.append(sessions_frame(pending))
        pending.clear()

    def flush() -> None:
        to_frame()
        frame = concat_sessions(frames)
        frames.clear()
        for lo, hi in spans:
            done.add(lo, hi)
        spans.clear()
        touched.update(store.append(frame, checkpoint=done.spans, stored=len(done)))

    if resume is not None:
        summary.resumed = len(done)
        logger.info("resuming a first read of the session list: %d sessions were stored already", len(done))
    # A fresh read back to `since` lets the client stop at it. A resumed one reads the list as a
    # whole, skipping the positions stored (the client honours `resume` only then), and stops
    # here once a page is entirely older than `since`.
    batches = client.iter_session_pages(
        per_page=PER_PAGE, resume=None if resume is None else Coverage(resume),
        since=None if since is None or resume is not None else since.to_pydatetime())
    try:
        for batch in _with_progress(batches, progress):
            pending.extend(batch)
            summary.read += len(batch)
            if batch.span is not None:
                spans.append(batch.span)
            if len(pending) >= min(FRAME_ROWS, CHECKPOINT_ROWS):
                to_frame()
                if sum(map(len, frames)) >= CHECKPOINT_ROWS:
                    flush()
            if resume is not None and since is not None and batch and _all_before(batch, since):
                break
    except PaginationError:
        flush()
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    flush()
    store.finish(touched, since)


def _all_before(records: Iterable[Mapping[str, Any]], since: pd.Timestamp) -> bool:
    """Did every record of a (newest-first) page start before `since`?"""
    starts = pd.to_datetime([r.get("startTime") for r in records], utc=True, format="ISO8601",
                            errors="coerce")
    return bool(len(starts)) and not starts.isna().all() and bool(starts.max() < since)


def _refresh_head(store: SessionStore, client: SessionSource, progress: bool, summary: SyncSummary) -> None:
    """Read the head of the list until it covers the sessions that were active (at most
    HEAD_PAGES pages), re-read at most STRAGGLERS others one by one, skip stale ones."""
    stored = store.read_columns([])  # newest first: a row's rank is about its place in the list
    active = stored["is_active"].to_numpy(dtype=bool)
    stale = stored["stale_active"].to_numpy(dtype=bool)
    live = stored[active & ~stale][["start_time", "updated_at"]]
    # The head joins the stored sessions at the newest of them: only those need looking up.
    head = slice(0, (HEAD_PAGES + STRAGGLERS + 10) * PER_PAGE)
    ended = set(stored.index[head][~active[head]])
    newest = stored["start_time"].max()
    stale_count = int(stale.sum())
    live_pages = np.flatnonzero(active & ~stale) // PER_PAGE + 1
    del stored, active, stale
    depth = _head_depth(live_pages)
    by_pages = live.iloc[:int(np.searchsorted(live_pages, depth, side="right"))]
    oldest_live = by_pages["start_time"].min() if len(by_pages) else pd.NaT
    since = newest if pd.isna(oldest_live) else min(newest, oldest_live)
    pending = set(by_pages.index)
    state = {"after_join": 0, "joined": False}

    def stop(record: Mapping[str, Any]) -> bool:
        """Past the stored head and then every active session, or HEAD_PAGES past the
        stored head (new sessions are always read in full, however many arrived)."""
        rid = record.get("id")
        pending.discard(rid)
        state["joined"] = state["joined"] or rid in ended
        if not state["joined"]:
            return False
        state["after_join"] += 1
        return not pending or state["after_join"] >= HEAD_PAGES * PER_PAGE

    # `since` also adds the client's newest-first check: if the order does not hold it
    # reads every page instead of trusting the stop record.
    records = (r for batch in client.iter_session_pages(
        per_page=PER_PAGE, stop=stop, since=None if pd.isna(since) else since.to_pydatetime())
        for r in batch)
    try:
        fresh = sessions_frame(_with_progress(records, progress, unit=" sessions"))
    except PaginationError as exc:
        if exc.frame is not None:
            store.write(exc.frame)
        raise
    missed = live[~live.index.isin(fresh.index)]
    # Least recently updated first: those re-read and still running move to the back.
    chosen = list(missed.sort_values("updated_at", na_position="first").index[:STRAGGLERS])
    updated = sessions_frame(_reread(client, chosen))
    summary.read += len(fresh)
    summary.head_sessions, summary.rereads = len(fresh), len(chosen)
    summary.deferred, summary.stale_active = len(missed) - len(chosen), stale_count
    if len(missed) > len(chosen):
        logger.info("%d sessions still marked active were not re-read this time (at most %d per "
                    "refresh); later refreshes re-read them", len(missed) - len(chosen), STRAGGLERS)
    if stale_count:
        logger.info("%d sessions have been 'active' for longer than any session lasts; they are "
                    "flagged stale_active and no longer re-read", stale_count)
    store.write(concat_sessions([fresh, updated]))


def _reread(client: SessionSource, session_ids: Iterable[str]) -> list[dict[str, Any]]:
    records, failed = [], []
    for sid in session_ids:
        try:
            records.append(client.get_session(sid))
        except (AnamAPIError, AnamConnectionError) as exc:
            failed.append(f"{sid} ({type(exc).__name__})")
    if failed:
        warnings.warn(f"could not re-read {len(failed)} session(s) that were active: "
                      f"{', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}; "
                      "their cached rows are kept and retried next refresh",
                      CacheFileWarning, stacklevel=3)
    return records


def _head_depth(pages: np.ndarray) -> int:
    """How many head pages to read, given the page each active session was on (ascending):
    the depth d that costs least, d list pages plus one GET per active session deeper than d."""
    best, best_cost = 1, 1 + int((pages > 1).sum())
    for d in np.unique(pages):
        d = int(d)
        if d > HEAD_PAGES:
            break
        cost = d + int((pages > d).sum())
        if cost < best_cost:
            best, best_cost = d, cost
    return best


def _with_progress(items: Iterable[Any], show: bool, unit: str = " sessions") -> Iterator[Any]:
    """Items passed through; a tqdm bar counts sessions (a batch counts its length)."""
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm
    with tqdm(desc="Syncing sessions", unit=unit) as bar:
        for item in items:
            bar.update(len(item) if isinstance(item, list) else 1)
            yield item


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _reaches_further(since: pd.Timestamp | None, covered: pd.Timestamp | None | bool) -> bool:
    """Does a read back to `since` go beyond what the store already covers?"""
    if covered is None:
        return False
    if covered is False:
        return True
    return since is None or since < covered
