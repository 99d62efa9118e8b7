"""Exact pagination over a page-numbered, newest-first list that changes while it is read.

New sessions arrive at the head, so page boundaries shift under a reader. Every page answer
says which *tail positions* it covered (position counted from the oldest record, which stays
fixed as the head grows: q = total - 1 - index). Gaps in that coverage are exactly the records
that slipped across a boundary; they are re-read at their current pages until nothing is
missing and the id count matches the server's total, within a bounded number of rounds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import AnamAPIError, AnamError, PaginationError

logger = logging.getLogger("anam_notebooks")

Record = dict[str, Any]
FetchPage = Callable[[int], Awaitable[Any]]

MAX_REPAIR_ROUNDS = 40
MAX_STALLS = 3  # repair rounds in a row that did not shrink what is missing
STOP_WAVE = 2  # pages per wave when paging towards an unknown stop record


@dataclass
class Page:
    number: int
    records: list[Record]
    size: int  # items in `data`, odd ones included: positions count them
    total: int | None
    last_page: int | None
    per_page: int | None = None  # the page size the server says it used


def parse_page(number: int, body: Any, path: str = "/v1/sessions") -> Page:
    """One list answer, checked: `data` must be a list; non-object items are skipped, logged."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise AnamAPIError(f"GET {path}?page={number}: the answer has no 'data' list",
                           status_code=200, method="GET", path=path)
    records = [item for item in data if isinstance(item, dict)]
    if len(records) != len(data):
        logger.warning("page %d: skipped %d items that are not session objects",
                       number, len(data) - len(records))
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    return Page(number, records, len(data), _count(meta.get("total")), _count(meta.get("lastPage")),
                _count(meta.get("perPage")) or None)


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


class Coverage:
    """A set of closed integer intervals of tail positions already read."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int]] = []

    def add(self, lo: int, hi: int) -> None:
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
    some pages could not be read even after re-reading."""

    def __init__(self, fetch: FetchPage, *, per_page: int, concurrency: int,
                 since: datetime | None = None, stop: Callable[[Record], bool] | None = None) -> None:
        self.fetch = fetch
        self.per_page = per_page
        self.concurrency = concurrency
        self.since = since
        self.stop = stop
        self.seen: dict[str, Record] = {}
        self.coverage = Coverage()
        self.total: int | None = None
        self.failures: dict[int, AnamError] = {}
        self.requests = 0
        self.floor = 0
        self.in_flight = 0
        self.arrivals = 0.0  # smoothed growth of the total between consecutive answers
        self.meta_contradicted = False  # an empty page where meta promised records
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

    def _accept(self, page: Page) -> list[Record]:
        fresh = []
        for record in page.records:
            key = record_key(record)
            if key not in self.seen:
                self.seen[key] = record
                fresh.append(record)
        return fresh

    # -- the pass -------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[list[Record]]:
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
            self._raise_failures(complete=not self.failures)
            return
        if self.since is not None or self.stop is not None:
            async for batch in self._towards_stop(first, last):
                yield batch
        else:
            async for batch in self._in_order(self._start(list(range(2, last + 1)))):
                yield batch
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

    async def _in_order(self, tasks: list[asyncio.Task[Page | AnamError]]) -> AsyncIterator[list[Record]]:
        """Yield pages in page order; an empty page ends the list whatever meta says."""
        for i, task in enumerate(tasks):
            page = await task
            if isinstance(page, AnamError):
                continue
            if not page.size:
                for later in tasks[i + 1:]:
                    later.cancel()
                return
            yield self._accept(page)

    async def _blind(self, start: int) -> AsyncIterator[list[Record]]:
        """No total in the answers: read waves of pages until an empty or short page."""
        number = start
        while True:
            tasks = self._start(list(range(number, number + self.concurrency)))
            for i, task in enumerate(tasks):
                page = await task
                if isinstance(page, AnamError):
                    continue
                if page.records:
                    yield self._accept(page)
                if page.size < self.per_page:
                    for later in tasks[i + 1:]:
                        later.cancel()
                    return
            number += self.concurrency

    async def _towards_stop(self, first: Page, last: int) -> AsyncIterator[list[Record]]:
        """Page in small waves until the `since`/`stop` condition holds, then set `self.floor`
        to the lowest tail position the stopping page covered (it stays 0 when read to the end).
        If the newest-first order does not hold, read every remaining page instead."""
        order = _OrderCheck()
        if not self._in_order_by_start(first, order, {}):
            tasks = self._start(list(range(2, last + 1)))
        elif self._stops(first):
            self.floor = self._floor(first)
            return
        else:
            tasks = []
        number = 2
        while number <= last and not tasks:
            wave = self._start(list(range(number, min(number + self._wave_size(order), last + 1))))
            for i, task in enumerate(wave):
                page = await task
                if isinstance(page, AnamError):
                    continue
                if not page.size:
                    return
                if not self._in_order_by_start(page, order, self.seen):
                    tasks = wave[i:] + self._start(list(range(number + len(wave), last + 1)))
                    break
                yield self._accept(page)
                if self._stops(page):
                    for later in wave[i + 1:]:
                        later.cancel()
                    self.floor = self._floor(page)
                    return
            number += len(wave)
        async for batch in self._in_order(tasks):
            yield batch

    def _in_order_by_start(self, page: Page, order: _OrderCheck, seen: dict[str, Record]) -> bool:
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

    async def _repair(self) -> AsyncIterator[list[Record]]:
        """Re-read where tail positions were missed until the coverage is whole and (for a full
        read) the id count equals the server's total; give up when rounds stop making progress."""
        floor = self.floor
        full = floor == 0
        rescanned, best, stalls = False, None, 0
        for _ in range(MAX_REPAIR_ROUNDS):
            total = self.total or 0
            gaps = self.coverage.gaps(floor, total - 1)
            if not gaps:
                if not full or len(self.seen) == total or rescanned:
                    break
                logger.info("read %d sessions but the server reports %d: reading every page again",
                            len(self.seen), total)
                rescanned = True
                self.coverage = Coverage()
                pages = list(range(1, math.ceil(total / self.per_page) + 1))
                async for batch in self._in_order(self._start(pages)):
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
        return not full or len(self.seen) == total

    def _raise_failures(self, complete: bool) -> None:
        if complete:
            if self.failures:
                logger.info("pages %s failed at first but their sessions were read again",
                            sorted(self.failures))
            return
        if not self.failures:
            logger.warning("the session list kept changing: read %d sessions, the server reports %s",
                           len(self.seen), self.total)
            return
        failed = sorted(self.failures)
        raise PaginationError(
            f"{len(failed)} page(s) of GET /v1/sessions failed after retries: {failed}; "
            f"{len(self.seen)} sessions were read (see .records). First cause: "
            f"{self.failures[failed[0]]}",
            records=list(self.seen.values()), failed_pages=failed, causes=dict(self.failures))


class _OrderCheck:
    """Verifies newest-first order by startTime as pages arrive in order; records that were
    already seen (pushed across a boundary by new arrivals) are not held against it."""

    def __init__(self) -> None:
        self.newest: datetime | None = None
        self.oldest: datetime | None = None
        self.records = 0

    def accepts(self, page: Page, seen: dict[str, Record]) -> bool:
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
                  since: datetime | None = None,
                  stop: Callable[[Record], bool] | None = None) -> AsyncIterator[list[Record]]:
    """Batches of records from every page, each id once; see `Pager`."""
    pager = Pager(fetch, per_page=per_page, concurrency=concurrency, since=since, stop=stop)
    try:
        async for batch in pager.run():
            if batch:
                yield batch
    finally:
        await pager.cancel()
