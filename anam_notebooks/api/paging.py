"""Exact pagination over a page-numbered, newest-first list that changes while it is read.

New sessions arrive at the head, so page boundaries shift under a reader. Every page answer
says which *tail positions* it covered (position counted from the oldest record, which stays
fixed as the head grows: q = total - 1 - index). Gaps in that coverage are exactly the records
that slipped across a boundary; they are re-read at their current pages until nothing is
missing and the id count matches the server's total, within a bounded number of rounds.

Streaming: the pager keeps ids (`SeenIds`: 16 bytes an id for UUIDs), never records; each page's new records are
handed on as a `Batch` (a list that also says which tail positions the page covered) and then
forgotten, and at most a small window of pages is read ahead of the consumer. Because tail
positions do not move, a reader that stored some batches can later `resume` with their
positions: only the rest of the list is read.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .errors import AnamAPIError, AnamError, PaginationError

logger = logging.getLogger("anam_notebooks")

Record = dict[str, Any]
FetchPage = Callable[[int], Awaitable[Any]]

MAX_REPAIR_ROUNDS = 40
MAX_STALLS = 3  # repair rounds in a row that did not shrink what is missing
STOP_WAVE = 2  # pages per wave when paging towards an unknown stop record
READ_AHEAD = 2  # pages started ahead of the consumer, per request allowed in flight
STALE_PAGES = 2  # fewest pages in a row adding no new session before a walk gives up
MAX_PLAUSIBLE_TOTAL = 10**9  # sessions: beyond any organisation (a million is a supported size)
SEEN_CHUNK = 65_536  # ids read between two merges of `SeenIds`' arrays (about 5 MB of integers)


@dataclass
class Page:
    number: int
    records: list[Record]
    size: int  # items in `data`, odd ones included: positions count them
    total: int | None
    last_page: int | None
    per_page: int | None = None  # the page size the server says it used
    slots: list[int] | None = None  # index in `data` of each record, when some items were skipped


class Batch(list[Record]):
    """The new records of one page, plus the tail positions (lo, hi) that page covered
    (None when the server gave no total). A consumer that has stored every batch up to
    this one may record `span` as done and `resume` from it later."""

    span: tuple[int, int] | None = None


def parse_page(number: int, body: Any, path: str = "/v1/sessions") -> Page:
    """One list answer, checked: `data` must be a list; non-object items are skipped, logged."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise AnamAPIError(f"GET {path}?page={number}: the answer has no 'data' list",
                           status_code=200, method="GET", path=path)
    records = [item for item in data if isinstance(item, dict)]
    slots = None
    if len(records) != len(data):
        logger.warning("page %d: skipped %d items that are not session objects",
                       number, len(data) - len(records))
        slots = [i for i, item in enumerate(data) if isinstance(item, dict)]
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    return Page(number, records, len(data), _count(meta.get("total")), _count(meta.get("lastPage")),
                _count(meta.get("perPage")) or None, slots)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def record_key(record: Record) -> str:
    """The id that makes a record unique; a record without a string id is keyed by its content."""
    rid = record.get("id")
    if isinstance(rid, str) and rid:
        return rid
    return "content:" + json.dumps(record, sort_keys=True, default=str)


def start_time(record: Record) -> datetime | None:
    value = record.get("startTime")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOW = (1 << 64) - 1


class SeenIds:
    """The ids a pass has read, exactly, in memory that hardly grows with their number.

    An id in the canonical UUID form (lower-case hex, hyphenated: what the API sends) is kept
    as its 128 bits: 16 bytes in numpy arrays, in BUCKETS buckets by the id's last byte, each
    sorted by (high half, low half). A look-up searches the high half, and where high halves
    are equal (ids that share their first 64 bits) the low half within them, so two ids are
    one only when all 128 bits are, and a server that sends many such ids costs a search, never
    a scan. The form is canonical, so the bits give back the very string. Recent ids wait in a
    small set of integers and join the arrays every `chunk` ids; a join rewrites only buckets
    (a 256th of the ids each), so it never holds a second copy of them all. Any other id (a
    server that does not send UUIDs, or spells them otherwise) is kept as its string, exactly.
    """

    BUCKETS = 256

    def __init__(self, chunk: int | None = None) -> None:
        self.chunk = SEEN_CHUNK if chunk is None else chunk
        empty = np.empty(0, dtype=np.uint64)
        self._high = [empty] * self.BUCKETS  # per bucket, ascending
        self._low = [empty] * self.BUCKETS  # the low halves of the same ids (ascending within a high half)
        self._stored_count = 0
        self._recent: set[int] = set()  # UUIDs (as 128-bit integers) not yet in the arrays
        self._other: set[str] = set()  # ids that are not canonical UUIDs

    def __len__(self) -> int:
        return self._stored_count + len(self._recent) + len(self._other)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if not _UUID.fullmatch(key):
            return key in self._other
        value = int(key.replace("-", ""), 16)
        return value in self._recent or self._stored(value)

    def __iter__(self) -> Iterator[str]:
        yield from self._other
        for value in self._recent:
            yield _uuid_text(value)
        for highs, lows in zip(self._high, self._low):
            for high, low in zip(highs.tolist(), lows.tolist()):
                yield _uuid_text(high << 64 | low)

    def add_new(self, keys: list[str]) -> list[bool]:
        """Add `keys` in order; for each, whether it was new (a repeat within `keys` is not)."""
        new = []
        for key in keys:
            if _UUID.fullmatch(key):
                value = int(key.replace("-", ""), 16)
                fresh = value not in self._recent and not self._stored(value)
                if fresh:
                    self._recent.add(value)
            else:
                fresh = key not in self._other
                self._other.add(key)
            new.append(fresh)
        if len(self._recent) >= self.chunk:
            self._merge()
        return new

    def _stored(self, value: int) -> bool:
        """Whether the arrays hold this 128-bit value (exactly: both halves equal)."""
        bucket = value % self.BUCKETS
        highs = self._high[bucket]
        high = np.uint64(value >> 64)
        at = int(highs.searchsorted(high))
        if at == len(highs) or highs[at] != high:
            return False
        end = int(highs.searchsorted(high, side="right"))
        lows = self._low[bucket][at:end]  # one high half: its low halves ascending
        low = np.uint64(value & _LOW)
        at = int(lows.searchsorted(low))
        return at < len(lows) and bool(lows[at] == low)

    def _merge(self) -> None:
        recent = np.array([[v >> 64, v & _LOW] for v in self._recent], dtype=np.uint64).reshape(-1, 2)
        self._recent.clear()
        buckets = recent[:, 1] % np.uint64(self.BUCKETS)
        for bucket in np.unique(buckets).tolist():
            rows = recent[buckets == bucket]
            high = np.concatenate([self._high[bucket], rows[:, 0]])
            low = np.concatenate([self._low[bucket], rows[:, 1]])
            order = np.lexsort((low, high))
            self._high[bucket], self._low[bucket] = high[order], low[order]
            self._stored_count += len(rows)


def _uuid_text(value: int) -> str:
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Coverage:
    """A set of closed integer intervals of tail positions already read."""

    def __init__(self, spans: list[tuple[int, int]] | None = None) -> None:
        self._spans: list[tuple[int, int]] = []
        for lo, hi in spans or ():
            self.add(lo, hi)

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The merged intervals, lowest first (a copy)."""
        return list(self._spans)

    def __len__(self) -> int:
        """How many positions are covered."""
        return sum(hi - lo + 1 for lo, hi in self._spans)

    def contains(self, position: int) -> bool:
        return any(lo <= position <= hi for lo, hi in self._spans)

    def add(self, lo: int, hi: int) -> None:
        if hi < lo:
            return
        spans = sorted([*self._spans, (lo, hi)])
        merged = [spans[0]]
        for a, b in spans[1:]:
            if a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._spans = merged

    def gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        missing, cursor = [], lo
        for a, b in self._spans:
            if b < cursor:
                continue
            if a > hi:
                break
            if a > cursor:
                missing.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
        if cursor <= hi:
            missing.append((cursor, hi))
        return missing


class Pager:
    """One pass over the list: yields batches of new records, then raises PaginationError if
    some pages could not be read even after re-reading.

    `resume` holds tail positions whose records the caller already has (from an earlier,
    interrupted full read): those records are neither read again where avoidable nor yielded.
    """

    def __init__(self, fetch: FetchPage, *, per_page: int, concurrency: int,
                 since: datetime | None = None, stop: Callable[[Record], bool] | None = None,
                 resume: Coverage | None = None) -> None:
        self.fetch = fetch
        self.per_page = per_page
        self.concurrency = concurrency
        self.since = since
        self.stop = stop
        self.seen = SeenIds()  # ids only: records are handed on, never kept
        self.prior = Coverage(resume.spans) if resume is not None and since is None and stop is None \
            else Coverage()
        self.coverage = Coverage(self.prior.spans)
        self.total: int | None = None
        self.failures: dict[int, AnamError] = {}
        self.requests = 0
        self.floor = 0
        self.in_flight = 0
        self.arrivals = 0.0  # smoothed growth of the total between consecutive answers
        self.meta_contradicted = False  # an empty page where meta promised records
        self.meta_trusted = True  # False once a page's meta was implausible: totals are ignored
        self.novel = False  # whether the page last accepted held any session not read before
        self.stale: list[int] = []  # pages in a row (in page order) that added nothing new
        # A list growing faster than it is read can show a few pages of sessions already read
        # (pushed down across boundaries); a read-ahead window of them in a row cannot be drift.
        self.stale_limit = max(STALE_PAGES, READ_AHEAD * concurrency)
        self.stalled: str | None = None  # why the walk stopped making progress
        self._tasks: set[asyncio.Task[Page | AnamError]] = set()

    # -- fetching -------------------------------------------------------------------------
    async def _read(self, number: int) -> Page | AnamError:
        self.requests += 1
        self.in_flight += 1
        try:
            page = parse_page(number, await self.fetch(number))
        except AnamError as exc:
            self.failures[number] = exc
            return exc
        finally:
            self.in_flight -= 1
        self._check_meta(page)
        if page.total is not None:
            if self.total is not None:
                grown = max(0, page.total - self.total)
                self.arrivals = 0.7 * self.arrivals + 0.3 * grown
            self.total = page.total
            if not page.size and page.total > (number - 1) * self.per_page:
                self.meta_contradicted = True
            if page.size and page.total - 1 - (number - 1) * self.per_page >= 0:
                hi = page.total - 1 - (number - 1) * self.per_page
                self.coverage.add(max(hi - page.size + 1, 0), hi)
        return page

    def _check_meta(self, page: Page) -> None:
        """Drop totals that cannot be true (beyond MAX_PLAUSIBLE_TOTAL, more records than the
        pages can hold, more pages than records): paging then goes on lazily, as without meta,
        instead of planning pages for a number no list has. Once one page lied, none is trusted."""
        if self.meta_trusted and (page.total is not None or page.last_page is not None):
            total, last = page.total, page.last_page
            per = page.per_page or self.per_page
            problem = None
            if total is not None and total > MAX_PLAUSIBLE_TOTAL:
                problem = f"total {total:,} is more sessions than any list holds"
            elif last is not None and last > max(total if total is not None else MAX_PLAUSIBLE_TOTAL, 1):
                problem = f"lastPage {last:,} is more pages than there are sessions"
            elif total is not None and last is not None and total > last * per:
                problem = f"total {total:,} does not fit in {last:,} pages of {per}"
            if problem is not None:
                logger.warning("GET /v1/sessions?page=%d: the answer's meta is implausible (%s); "
                               "ignoring totals and paging until a short page", page.number, problem)
                self.meta_trusted = False
                self.total = None
                self.coverage = Coverage(self.prior.spans)
        if not self.meta_trusted:
            page.total = page.last_page = None

    def _progressing(self, page: Page) -> bool:
        """After `_accept(page)`: False once `stale_limit` pages in a row brought no session not
        read before (a server that ignores `page`, or repeats itself): the walk must end."""
        if not page.records or self.novel:
            self.stale.clear()
            return True
        self.stale.append(page.number)
        if len(self.stale) < self.stale_limit:
            return True
        self.stalled = (f"pages {self.stale[0]}-{self.stale[-1]} of GET /v1/sessions added no session not already read "
                        "(does the server ignore the page number?)")
        return False

    def _start(self, numbers: list[int]) -> list[asyncio.Task[Page | AnamError]]:
        tasks = [asyncio.ensure_future(self._read(n)) for n in numbers]
        self._tasks.update(tasks)
        for task in tasks:
            task.add_done_callback(self._tasks.discard)
        return tasks

    async def cancel(self) -> None:
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _span(self, page: Page) -> tuple[int, int] | None:
        if page.total is None or not page.size:
            return None
        hi = page.total - 1 - (page.number - 1) * self.per_page
        return (max(hi - page.size + 1, 0), hi) if hi >= 0 else None

    def _accept(self, page: Page) -> Batch:
        """The page's records not yet seen (nor already held by the caller, see `resume`)."""
        fresh = Batch()
        fresh.span = span = self._span(page)
        if self.prior and span is not None:
            hi = span[1]
            slots = page.slots if page.slots is not None else range(len(page.records))
            held = [self.prior.contains(hi - slot) for slot in slots]
        else:
            held = None
        records = [r for i, r in enumerate(page.records) if held is None or not held[i]]
        keys = [rid if type(rid := r.get("id")) is str and rid else record_key(r) for r in records]
        fresh.extend(r for r, new in zip(records, self.seen.add_new(keys)) if new)
        self.novel = bool(fresh) or (held is not None and any(held))
        return fresh

    @property
    def known(self) -> int:
        """Sessions accounted for: read in this pass, or held by the caller from before."""
        return len(self.seen) + len(self.prior)

    # -- the pass -------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[Batch]:
        first = await self._read(1)
        if isinstance(first, AnamError):
            raise first
        yield self._accept(first)
        if not first.size:
            return
        self._adopt_server_page_size(first)
        last = first.last_page
        if last is None and first.total is not None:
            last = math.ceil(first.total / self.per_page)
        if last is None:
            async for batch in self._blind(start=2):
                yield batch
            self._raise_failures(complete=not self.failures and not self.stalled)
            return
        if self.since is not None or self.stop is not None:
            async for batch in self._towards_stop(first, last):
                yield batch
        else:
            async for batch in self._in_order(self._pages_for_gaps(first)):
                yield batch
        if self.stalled or not self.meta_trusted:
            self._raise_failures(complete=not self.failures and not self.stalled)
            return
        if self.meta_contradicted:
            logger.warning("GET /v1/sessions: an empty page came before the total the server "
                           "reported (%s); the list ends there", self.total)
            self._raise_failures(complete=not self.failures)
            return
        async for batch in self._repair():
            yield batch

    def _adopt_server_page_size(self, first: Page) -> None:
        """A server that pages by fewer records than asked (a lower cap, or perPage ignored)
        says so in `meta.perPage`, or shows it by a short first page of a longer list; page
        numbers and tail positions must then use its size, or whole stretches are skipped."""
        served = first.per_page
        if served is None and first.total is not None and first.size < min(first.total, self.per_page):
            served = first.size
        if served is not None and 0 < served < self.per_page:
            logger.info("GET /v1/sessions: the server pages by %d records, not the %d asked for",
                        served, self.per_page)
            self.per_page = served

    def _pages_for_gaps(self, first: Page) -> Iterator[int]:
        """Pages 2.. that hold the positions not yet covered (all of them on a fresh read),
        ascending, planned lazily: memory does not follow the length of the list."""
        total = first.total or 0
        last = 1
        for lo, hi in reversed(self.coverage.gaps(0, total - 1)):  # newest positions first
            start = max((total - 1 - hi) // self.per_page + 1, last + 1)
            stop = (total - 1 - lo) // self.per_page + 2
            yield from range(start, stop)
            last = max(last, stop - 1)

    async def _in_order(self, numbers: Iterable[int], started: list[asyncio.Task[Page | AnamError]] | None = None,
                        *, rereading: bool = False) -> AsyncIterator[Batch]:
        """Yield pages in page order; an empty page ends the list whatever meta says, and so
        do pages that add nothing new (unless `rereading` pages read before, on purpose).

        Only a window of pages is read ahead of the consumer (READ_AHEAD per request allowed in
        flight), so memory follows the window, not the list, however slowly batches are taken.
        """
        window: list[asyncio.Task[Page | AnamError]] = list(started or [])
        pending = itertools.islice(numbers, len(window), None)
        ahead = max(4, READ_AHEAD * self.concurrency)
        window += self._start(list(itertools.islice(pending, max(0, ahead - len(window)))))
        while window:
            page = await window.pop(0)
            window += self._start(list(itertools.islice(pending, 1)))
            if isinstance(page, AnamError):
                continue
            if not page.size:
                for later in window:
                    later.cancel()
                return
            batch = self._accept(page)
            if not rereading and not self._progressing(page):
                for later in window:
                    later.cancel()
                return
            yield batch

    async def _blind(self, start: int) -> AsyncIterator[Batch]:
        """No total in the answers: read waves of pages until an empty or short page."""
        number = start
        while True:
            tasks = self._start(list(range(number, number + self.concurrency)))
            for i, task in enumerate(tasks):
                page = await task
                if isinstance(page, AnamError):
                    continue
                if page.records:
                    batch = self._accept(page)
                    if not self._progressing(page):
                        for later in tasks[i + 1:]:
                            later.cancel()
                        return
                    yield batch
                if page.size < self.per_page:
                    for later in tasks[i + 1:]:
                        later.cancel()
                    return
            number += self.concurrency

    async def _towards_stop(self, first: Page, last: int) -> AsyncIterator[Batch]:
        """Page in small waves until the `since`/`stop` condition holds, then set `self.floor`
        to the lowest tail position the stopping page covered (it stays 0 when read to the end).
        If the newest-first order does not hold, read every remaining page instead."""
        order = _OrderCheck()
        rest: range | None = None
        started: list[asyncio.Task[Page | AnamError]] = []
        if not self._in_order_by_start(first, order, set()):
            rest = range(2, last + 1)
        elif self._stops(first):
            self.floor = self._floor(first)
            return
        number = 2
        while number <= last and rest is None:
            wave = self._start(list(range(number, min(number + self._wave_size(order), last + 1))))
            for i, task in enumerate(wave):
                page = await task
                if isinstance(page, AnamError):
                    continue
                if not page.size:
                    return
                if not self._in_order_by_start(page, order, self.seen):
                    started = wave[i:]
                    rest = range(number + i, last + 1)
                    break
                batch = self._accept(page)
                if not self._progressing(page):
                    for later in wave[i + 1:]:
                        later.cancel()
                    return
                yield batch
                if self._stops(page):
                    for later in wave[i + 1:]:
                        later.cancel()
                    self.floor = self._floor(page)
                    return
            number += len(wave)
        if rest:
            async for batch in self._in_order(rest, started):
                yield batch

    def _in_order_by_start(self, page: Page, order: _OrderCheck, seen: Container[str]) -> bool:
        if self.since is None or order.accepts(page, seen):
            return True
        logger.warning("sessions are not newest-first by startTime (page %d): "
                       "reading every page instead of stopping at since", page.number)
        self.since = self.stop = None
        return False

    def _stops(self, page: Page) -> bool:
        if self.stop is not None and any(self.stop(r) for r in page.records):
            return True
        if self.since is not None:
            starts = [start_time(r) for r in page.records]
            return bool(starts) and all(s is not None and s < self.since for s in starts)
        return False

    def _floor(self, page: Page) -> int:
        if page.total is None:
            return 0
        hi = page.total - 1 - (page.number - 1) * self.per_page
        return max(hi - page.size + 1, 0)

    def _wave_size(self, order: _OrderCheck) -> int:
        """Pages to request at once: a couple when hunting a stop record, else as many as the
        start times suggest remain before `since`."""
        if self.stop is not None or self.since is None:
            return STOP_WAVE if self.stop is not None else self.concurrency
        remaining = order.pages_until(self.since, self.per_page)
        return max(1, min(self.concurrency, remaining or STOP_WAVE))

    async def _repair(self) -> AsyncIterator[Batch]:
        """Re-read where tail positions were missed until the coverage is whole and (for a full
        read) the id count equals the server's total; give up when rounds stop making progress."""
        floor = self.floor
        full = floor == 0
        rescanned, best, stalls = False, None, 0
        for _ in range(MAX_REPAIR_ROUNDS):
            total = self.total or 0
            gaps = self.coverage.gaps(floor, total - 1)
            if not gaps:
                if not full or self.known == total or rescanned:
                    break
                logger.info("read %d sessions but the server reports %d: reading every page again",
                            self.known, total)
                rescanned = True
                self.coverage = Coverage()
                self.prior = Coverage()  # read the held positions again too: counts must add up
                pages = range(1, math.ceil(total / self.per_page) + 1)
                async for batch in self._in_order(pages, rereading=True):
                    yield batch
                continue
            missing = sum(hi - lo + 1 for lo, hi in gaps)
            stalls = stalls + 1 if best is not None and missing >= best else 0
            if stalls >= MAX_STALLS:
                break
            best = missing if best is None else min(best, missing)
            walks = await asyncio.gather(*(self._walk(lo, hi) for lo, hi in gaps))
            for pages_read in walks:
                for page in pages_read:
                    batch = self._accept(page)
                    if batch:
                        yield batch
        self._raise_failures(complete=self._complete(floor, full))

    async def _walk(self, lo: int, hi: int) -> list[Page]:
        """Read one gap of tail positions, newest end first, one page at a time: each page is
        chosen from the total the server is predicted to have when it answers."""
        pages: list[Page] = []
        for _ in range(math.ceil((hi - lo + 1) / self.per_page) + 2):
            left = self.coverage.gaps(lo, hi)
            if not left:
                break
            top = left[-1][1]
            index = max(0, self._predicted_total() - 1 - top)
            page = await self._read(index // self.per_page + 1)
            if isinstance(page, AnamError) or not page.size:
                break
            pages.append(page)
        return pages

    def _predicted_total(self) -> int:
        """The latest total plus the arrivals expected before a request sent now is answered."""
        return (self.total or 0) + round(self.arrivals * (self.in_flight + 1))

    def _complete(self, floor: int, full: bool) -> bool:
        total = self.total or 0
        if self.coverage.gaps(floor, total - 1):
            return False
        return not full or self.known == total

    def _raise_failures(self, complete: bool) -> None:
        if self.stalled:
            raise PaginationError(
                f"the walk over GET /v1/sessions stopped making progress: {self.stalled}; "
                f"{len(self.seen)} sessions were read and already handed on (their ids are in .ids)",
                ids=sorted(self.seen), failed_pages=list(self.stale), causes=dict(self.failures))
        if complete:
            if self.failures:
                logger.info("pages %s failed at first but their sessions were read again",
                            sorted(self.failures))
            return
        if not self.failures:
            logger.warning("the session list kept changing: read %d sessions, the server reports %s",
                           self.known, self.total)
            return
        failed = sorted(self.failures)
        raise PaginationError(
            f"{len(failed)} page(s) of GET /v1/sessions failed after retries: {failed}; "
            f"{len(self.seen)} sessions were read and already handed on (their ids are in .ids). "
            f"First cause: {self.failures[failed[0]]}",
            ids=sorted(self.seen), failed_pages=failed, causes=dict(self.failures))


class _OrderCheck:
    """Verifies newest-first order by startTime as pages arrive in order; records that were
    already seen (pushed across a boundary by new arrivals) are not held against it."""

    def __init__(self) -> None:
        self.newest: datetime | None = None
        self.oldest: datetime | None = None
        self.records = 0

    def accepts(self, page: Page, seen: Container[str]) -> bool:
        starts = [start_time(r) for r in page.records]
        known = [s for s in starts if s is not None]
        if any(a < b for a, b in zip(known, known[1:])):
            return False
        fresh = [s for r, s in zip(page.records, starts)
                 if s is not None and record_key(r) not in seen]
        if fresh and self.oldest is not None and max(fresh) > self.oldest:
            return False
        if known:
            self.newest = max(self.newest or known[0], known[0])
            self.oldest = min(self.oldest or known[-1], known[-1])
        self.records += len(page.records)
        return True

    def pages_until(self, since: datetime, per_page: int) -> int | None:
        """Estimated pages left before `since`, from the time one record has spanned so far."""
        if self.newest is None or self.oldest is None or self.records < 2:
            return None
        spread = (self.newest - self.oldest).total_seconds() / (self.records - 1)
        if spread <= 0:
            return None
        left = (self.oldest - since).total_seconds() / spread
        return max(1, math.ceil(left / per_page) + 1)


async def iterate(fetch: FetchPage, *, per_page: int, concurrency: int,
                  since: datetime | None = None, stop: Callable[[Record], bool] | None = None,
                  resume: Coverage | None = None) -> AsyncIterator[Batch]:
    """Batches of records from every page, each id once; see `Pager`."""
    pager = Pager(fetch, per_page=per_page, concurrency=concurrency, since=since, stop=stop,
                  resume=resume)
    try:
        async for batch in pager.run():
            if batch or batch.span is not None:  # an empty batch still reports its positions
                yield batch
    finally:
        await pager.cancel()
