"""The one place that ties the layers together: `connect` picks the API or the simulator,
`fetch_sessions` runs the client, the store and the frame builder for a time window."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .api.client import AnamClient
from .api.config import API_KEY_ENV, api_key_from_env
from .api.errors import (
    AnamAPIError,
    AnamConnectionError,
    AuthenticationError,
    ConfigurationError,
    InvalidSessionId,
    NotFoundError,
    PaginationError,
)
from .api.ids import check_search, normalize_uuid_filter
from .api.runner import RUNNER
from .api.source import AsyncSessionSource, SessionSource, TranscriptResult, blocking_source, check_source
from .data.checks import ended_mask
from .data.dataset import SessionDataset, dataset_from_directory
from .data.fields import one_time
from .data.progress import Progress, iterate_with_progress, show_progress
from .data.sampling import sample_sessions
from .data.sessions import newest_first, normalize_sessions_frame, sessions_frame
from .data.store import cache_directory, default_cache_dir
from .data.timespan import TimeBound, parse_window
from .data.transcript_store import OUTCOMES, concat_turns, empty_turns, open_transcript_store
from .data.transcripts import turns_frame
from .simulator import DEMO_FLEET, demo_client
from .sync import SyncSummary, open_store, refresh_store

if TYPE_CHECKING:  # Ibis loads on first use
    import ibis.expr.types as ir

logger = logging.getLogger("anam_notebooks")


def connect(api_key: str | None = None, base_url: str | None = None, **kw: Any) -> AnamClient:
    """A client for the real API when a key is given or ANAM_API_KEY is set; otherwise the
    built-in simulator with generated demo data (one line says so). `client.source` tells
    reports where the data came from: the base URL, or "simulator".

    Parameters
    ----------
    api_key : str, optional
        The Anam API key; by default ``ANAM_API_KEY``. Without either, the simulator is used.
    base_url : str, optional
        The API's base URL (only with a key); by default ``ANAM_API_URL`` or the real API.
    **kw
        Client options (timeout, max_retries, concurrency...), or simulator options for the
        demo fleet when no key is set.

    Returns
    -------
    AnamClient
        A client whose ``source`` is its base URL, or ``"simulator"``.

    Raises
    ------
    ConfigurationError
        A `base_url` without any key (the real API would refuse every request), or a bad option.
    """
    if api_key_from_env(api_key) is not None:
        return AnamClient(api_key, base_url, **kw)
    if base_url is not None:
        raise ConfigurationError(
            f"base_url={base_url!r} was given without an API key: set {API_KEY_ENV} "
            "(or pass api_key=...), or leave both out to use the built-in simulator")
    client = demo_client(**{**DEMO_FLEET, **kw})
    client.source = "simulator"
    message = (f"{API_KEY_ENV} is not set: using the built-in Anam simulator with generated "
               "demo data (set it to read your real sessions)")
    logger.info(message)
    print(message)
    return client



#: Set by Jupyter Server for the kernel of every notebook opened in JupyterLab or Notebook.
INTERACTIVE_ENV = "JPY_SESSION_NAME"


def notebook_cache(cache: bool | str | Path | None = None, client: SessionSource | None = None) -> bool | Path:
    """What a notebook's `cache` parameter means: the value to pass as ``cache=`` to
    `fetch_sessions` and `fetch_transcripts`.

    A scheduled (headless) run of a notebook reads through the per-user cache by default, so the
    next run only refreshes it (a few dozen requests instead of every session of the window);
    a notebook opened in JupyterLab reads the API directly unless given a directory.

    Parameters
    ----------
    cache : None, bool, str or Path
        None: the per-user cache (`default_cache_dir()`, which honours
        ``ANAM_NOTEBOOKS_CACHE``) when run headless (papermill, a scheduler, a script), no
        cache in an interactive Jupyter session (one whose kernel Jupyter Server started, marked
        by ``JPY_SESSION_NAME``). True: the per-user cache. False: no cache. A path: that
        directory.
    client : SessionSource, optional
        The notebook's client. A redacted one reads through the cache like any other: the
        cache holds raw records and `fetch_sessions` / `fetch_transcripts` mask what they
        return, so the next unredacted reader gets the real data and a redacted one never
        sees it.
        The built-in simulator (``client.source == "simulator"``, no key set) is not cached
        by default: it generates a fresh fleet in-process on every run, which a cache would only
        pile up.

    Returns
    -------
    Path or False
        The cache directory, or False for none.

    Raises
    ------
    ValueError
        For any other value (an empty path, a number), naming the valid ones.
    """
    if (cache is not None and not isinstance(cache, (bool, str, os.PathLike))) or cache == "":
        raise ValueError(f"cache={cache!r} is not valid: expected None (the per-user cache when "
                         "headless), True (the per-user cache), False (no cache) or a directory path")
    if cache is None:
        built_in = getattr(client, "source", None) == "simulator"
        return False if built_in or os.environ.get(INTERACTIVE_ENV) else default_cache_dir()
    if cache is True:
        return default_cache_dir()
    if cache is False:
        return False
    return Path(cache).expanduser()


def fetch_sessions(client: SessionSource | None = None, since: TimeBound = None, until: TimeBound = None,
                   persona_id: str | None = None, api_key_id: str | None = None,
                   search: str | None = None, limit: int | None = None,
                   cache: bool | str | Path | None = None, progress: Progress = True) -> pd.DataFrame:
    """Sessions in [since, until] as the typed frame, newest first.

    Records stream from the pages into the frame chunk by chunk; nothing holds all raw
    records at once, so memory follows the frame (about 240 B a session).

    Parameters
    ----------
    client : SessionSource, optional
        The client to read with (`AnamClient`, or `RedactedClient` for masked frames: the
        cache then still holds raw sessions, masked on the way out); None means `connect()`
        (the simulator without a key).
    since, until : datetime, str or None
        datetime (naive = UTC), ISO-8601 string, or a span before now ("90m", "24h", "7d",
        "2w"). Paging starts at the newest end and stops once past `since`.
    persona_id, api_key_id, search : str, optional
        The list endpoint's filters (applied locally to a cache).
    limit : int, optional
        Keep the newest N sessions in the window.
    cache : bool, str or Path, optional
        None/False: no cache; True: the per-user cache directory; or a directory. The cache is
        a Parquet dataset partitioned by start date (see `SessionStore.path`); a first read
        checkpoints as it goes and resumes after an interruption, later calls refresh it
        incrementally. This is `sync_sessions` followed by one read of the store.
    progress : bool or "always"
        True shows a bar in Jupyter or on a terminal and stays quiet when headless; "always"
        forces it; False hides it.

    Returns
    -------
    pandas.DataFrame
        Indexed by session id, with the contract columns (`stale_active` marks sessions
        "active" for longer than any session lasts).

    Raises
    ------
    ValueError
        For a bad window, limit, filter or cache argument.
    TypeError
        When `client` is not a `SessionSource` (the message names what it lacks).
    PaginationError
        When pages still fail after retries; its `.frame` holds every session that was read
        (with a cache: the whole cache, the partial read already stored in it).
    """
    start, end = parse_window(since, until)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit={limit!r} is not valid: expected None or a whole number >= 0")
    show = show_progress(progress)
    persona_id = normalize_uuid_filter("persona_id", persona_id)
    api_key_id = normalize_uuid_filter("api_key_id", api_key_id)
    search = check_search(search)
    source = blocking_source(connect() if client is None else client)
    gate = source.redaction
    reader = gate.raw if gate is not None else source   # the cache only ever holds raw sessions
    try:
        if cache is not None and cache is not False:
            store = open_store(cache, reader)
            try:
                refresh_store(store, reader, since=start, progress=show)
            except PaginationError as exc:
                exc.frame = store.load()  # what was read is stored: the whole cache, including it
                raise
            frame = _filter_locally(store.load(), persona_id=persona_id, api_key_id=api_key_id, search=search)
        else:
            records = reader.iter_sessions(search=search, persona_id=persona_id, api_key_id=api_key_id,
                                           per_page=100, since=start.to_pydatetime() if start is not None else None,
                                           stop=_limit_stop(limit, start, end))
            frame = sessions_frame(iterate_with_progress(records, show))
    except PaginationError as exc:
        if gate is not None and exc.frame is not None:
            exc.frame = gate.sessions_frame(exc.frame)
        raise
    frame = newest_first(_within(frame, start, end))
    # Only the categories of the rows returned: the same sessions give the same frame,
    # whether they were filtered by the server or from the cache.
    frame = normalize_sessions_frame(frame if limit is None else frame.head(limit))
    return frame if gate is None else gate.sessions_frame(frame)


def sync_sessions(client: SessionSource | None = None, since: TimeBound = None, cache: bool | str | Path = True,
                  progress: Progress = True) -> SyncSummary:
    """Fill or refresh the session store without building a frame: memory follows one chunk.

    Records go from the list pages into Parquet parts every few thousand sessions; a first read
    checkpoints as it goes, so a killed sync resumes where it stopped (with or without
    `since`); later syncs read only the head of the list and a few active sessions.

    Parameters
    ----------
    client : SessionSource, optional
        The client to read with; None means `connect()` (the simulator without a key).
    since : datetime, str or None
        How far back the store must reach (the forms `fetch_sessions` takes); None: all history.
    cache : bool, str or Path
        True: the per-user cache directory; or a directory.
    progress : bool or "always"
        True shows a bar in Jupyter or on a terminal and stays quiet when headless; "always"
        forces it; False hides it.

    Returns
    -------
    SyncSummary
        The dataset directory, the rows stored, the coverage, and what this sync read.

    Raises
    ------
    ValueError
        For a bad `since`, `cache` or `progress`.
    PaginationError
        When pages still fail after retries; what was read is stored first.
    """
    start, _ = parse_window(since, None)
    show = show_progress(progress)
    if cache is None or cache is False:
        raise ValueError(f"cache={cache!r} is not valid for a sync: expected True (the per-user cache "
                         "directory) or a directory path")
    cache_directory(cache)  # a bad value fails before any request
    source = blocking_source(connect() if client is None else client)
    reader = source.redaction.raw if source.redaction is not None else source  # the store is raw
    return refresh_store(open_store(cache, reader), reader, since=start, progress=show)


def session_dataset(where: str | Path | bool | ir.Table | SessionDataset | None = None, *,
                    client: SessionSource | None = None) -> SessionDataset:
    """The sessions as a lazy `SessionDataset`: counted where they live, never loaded whole.

    Parameters
    ----------
    where : str, Path, bool, ibis.Table or None
        A cache directory (the value given as ``cache=``; True is the per-user one), the
        dataset directory inside it (``sessions-<hash>``), or any Ibis table with the session
        column contract (DuckDB, Spark, BigQuery, Snowflake, Trino, Postgres...); None: the
        per-user cache directory.
    client : SessionSource, optional
        With a cache directory: picks the dataset of this client's API and organisation
        (one request). Without it, a cache directory must hold exactly one dataset.

    Returns
    -------
    SessionDataset
        Read by an embedded DuckDB for a directory, by the table's own engine otherwise.
        Parts that are unreadable or belong to another key are left out with a
        `CacheFileWarning` naming them.

    Raises
    ------
    ValueError
        The directory holds no dataset (run `sync_sessions` first) or several (pass `client`
        or the dataset directory), or the table lacks a contract column.
    TypeError
        `where` is none of the accepted forms.
    """
    import ibis.expr.types as ir

    if isinstance(where, SessionDataset):
        return where
    if isinstance(where, ir.Table):
        return SessionDataset(where)
    if where is True:  # as `cache=True`: the per-user cache directory
        where = None
    if where is not None and not isinstance(where, (str, os.PathLike)):
        raise TypeError(f"where={where!r} is not usable: pass a cache directory, a dataset directory, "
                        "an Ibis table with the session columns, or None for the per-user cache")
    directory = cache_directory(True if where is None else where)
    if (directory / "_store.json").exists() or any(directory.glob("start_date=*")):
        return dataset_from_directory(directory)
    if client is not None:
        return dataset_from_directory(open_store(directory, blocking_source(client)).path)
    found = sorted(p for p in directory.glob("sessions-*") if p.is_dir())
    if not found:
        raise ValueError(f"{str(directory)!r} holds no session dataset: run `anam-notebooks sync --cache "
                         f"{directory}` (or sync_sessions(cache=...)) first, or give the dataset directory")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"{str(directory)!r} holds {len(found)} session datasets ({names}), one per API "
                         "and organisation: pass client= to pick its own, or the dataset directory")
    return dataset_from_directory(found[0])


def session_source(client: SessionSource | None = None,
                   dataset: str | Path | bool | ir.Table | SessionDataset | None = None,
                   since: TimeBound = None, until: TimeBound = None, persona_id: str | None = None,
                   api_key_id: str | None = None, search: str | None = None, limit: int | None = None,
                   cache: bool | str | Path | None = None, progress: Progress = True) -> pd.DataFrame | SessionDataset:
    """The sessions of a window as a notebook takes them: a frame from `fetch_sessions`, or,
    given `dataset`, the window of a `SessionDataset` (lazy: the analyses count in its engine).

    A scheduled report over a dataset far larger than memory passes ``dataset=`` (a directory
    filled by `sync_sessions`); nothing is then asked of the API: the sessions come from the files.

    Parameters
    ----------
    client : SessionSource, optional
        The client (used to read when `dataset` is None; with a cache directory holding the
        datasets of several organisations, it picks its own).
    dataset : str, Path, bool, ibis.Table, SessionDataset or None
        None or False: read with `fetch_sessions`. Otherwise what `session_dataset` takes: a
        cache directory, a dataset directory, an Ibis table, or True for the per-user cache.
    since, until, persona_id, api_key_id, search, limit
        As for `fetch_sessions`; on a dataset they filter in its engine (`limit`: the newest
        `limit` sessions of the window).
    cache, progress
        As for `fetch_sessions` (unused with a dataset).

    Returns
    -------
    pandas.DataFrame or SessionDataset
        The frame `fetch_sessions` returns, or the dataset restricted to the window and filters.

    Raises
    ------
    ValueError
        For a bad window, filter or limit; a dataset that cannot be opened; or a dataset with a
        redacting client (a dataset's labels and persona names are counted as stored, unmasked).
    """
    if dataset is None or dataset is False:
        return fetch_sessions(client, since=since, until=until, persona_id=persona_id, api_key_id=api_key_id,
                              search=search, limit=limit, cache=cache, progress=progress)
    if client is not None and blocking_source(client).redaction is not None:
        raise ValueError(f"dataset={dataset!r} cannot be read with redaction on: a dataset is counted as "
                         "stored, with customers' labels and persona names unmasked; leave out dataset "
                         "(the frame is masked) or redact")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit={limit!r} is not valid: expected None or a whole number >= 0")
    persona_id = normalize_uuid_filter("persona_id", persona_id)
    api_key_id = normalize_uuid_filter("api_key_id", api_key_id)
    search = check_search(search)
    found = _open_dataset(dataset, client)
    table = found.table
    condition = None
    for column, wanted in (("persona_id", persona_id), ("api_key_id", api_key_id)):
        if wanted is not None:
            test = table[column].lower() == wanted
            condition = test if condition is None else condition & test
    if search:
        needle = search.lower()
        test = table.id.lower().contains(needle).fill_null(False) | table.client_label.lower().contains(
            needle).fill_null(False)
        condition = test if condition is None else condition & test
    window = found.within(since, until, condition)
    if limit is None:
        return window
    import ibis

    newest = window.table.order_by([ibis.desc(window.table.start_time), window.table.id]).limit(limit)
    return SessionDataset(newest, path=window.path, notes=window.notes)


def _open_dataset(where: str | Path | bool | ir.Table | SessionDataset, client: SessionSource | None
                  ) -> SessionDataset:
    """`session_dataset(where)`, asking `client` which dataset is its own only when a cache
    directory holds several (so a directory of one dataset is read without any request)."""
    if client is None or not isinstance(where, (str, os.PathLike)):
        return session_dataset(where)
    directory = cache_directory(where)
    if len([p for p in directory.glob("sessions-*") if p.is_dir()]) > 1:
        return session_dataset(directory, client=client)
    return session_dataset(directory)


def _limit_stop(limit: int | None, start: pd.Timestamp | None, end: pd.Timestamp | None
                ) -> Callable[[Mapping[str, Any]], bool] | None:
    """Stop paging once `limit` sessions inside the window were seen (pages come newest first)."""
    if limit is None:
        return None
    seen: set[Any] = set()  # ids, so a record shown on two shifting pages counts once

    def stop(record: Mapping[str, Any]) -> bool:
        stamp = one_time(record.get("startTime")) if isinstance(record.get("startTime"), str) else pd.NaT
        if not pd.isna(stamp) and (start is None or stamp >= start) and (end is None or stamp <= end):
            seen.add(record.get("id"))
        return len(seen) >= limit

    return stop


def _within(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    if start is None and end is None:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    times = frame["start_time"]
    if start is not None:
        mask &= (times >= start).fillna(False).to_numpy(dtype=bool)
    if end is not None:
        mask &= (times <= end).fillna(False).to_numpy(dtype=bool)
    return frame[mask]


def _filter_locally(frame: pd.DataFrame, *, persona_id: str | None, api_key_id: str | None,
                    search: str | None) -> pd.DataFrame:
    """The list endpoint's filters, applied to cached sessions."""
    if persona_id is None and api_key_id is None and not search:
        return frame
    mask = pd.Series(True, index=frame.index)
    if persona_id is not None:
        mask &= (frame["persona_id"].str.lower() == persona_id).fillna(False)
    if api_key_id is not None:
        mask &= (frame["api_key_id"].str.lower() == api_key_id).fillna(False)
    if search:
        needle = search.lower()
        in_id = pd.Series(frame.index.str.lower().str.contains(needle, regex=False), index=frame.index)
        in_label = frame["client_label"].str.lower().str.contains(needle, regex=False)
        mask &= (in_id.fillna(False) | in_label.fillna(False))
    return frame[mask.to_numpy(dtype=bool)]


# ------------------------------------------------------------------------------ transcripts

TRANSCRIPT_STRATA = ("engine_version", "llm_model")


def fetch_transcripts(client: SessionSource | AsyncSessionSource | None, sessions_df: pd.DataFrame,
                      sample: int | None = None, cache: bool | str | Path | None = None, progress: Progress = True, *,
                      strata: Sequence[str] = TRANSCRIPT_STRATA, seed: int = 0) -> pd.DataFrame:
    """Transcripts of the sessions in `sessions_df` as a turns frame: one row per message.

    Requests go through the client's one request path (its concurrency limit, retries and
    backoff), many at a time (`iter_transcripts`). With a redacting client the cache is read
    and written raw, and the turns returned are masked. A session without a transcript is counted, never raised: 404
    (unknown, or none kept), `transcriptsEnabled: false`, and zero data retention (sessions the
    frame marks `zero_data_retention` are not even asked for). A request that still fails after
    the client's retries is counted as failed, with a warning; everything else is kept.

    Parameters
    ----------
    client
        A `SessionSource` (`AnamClient`, `RedactedClient`) or an `AsyncSessionSource`
        (`AsyncAnamClient`); None connects.
    sessions_df
        A sessions frame (from `fetch_sessions`), indexed by session id.
    sample
        None for every session, else at most this many: a reproducible random sample
        stratified over `strata`, each group getting an equal floor of the budget before the
        rest is shared by size, so a small group is not starved (same frame and seed, same sample).
    cache
        None/False: no cache; True: the per-user cache directory; or a directory path. Ended
        sessions' transcripts (and their 404s) are kept, since they no longer change, so a second
        call for the same sessions sends no request; active sessions are always asked again.
    progress
        True shows a bar in Jupyter or on a terminal (quiet when headless), "always" forces it,
        False hides it.
    strata
        Columns of `sessions_df` to stratify the sample over (missing columns are ignored).
    seed
        Picks a different reproducible sample.

    Returns
    -------
    pandas.DataFrame
        Columns session_id, turn_index, role, text, timestamp (UTC), speaking_duration,
        interrupted and response_gap (seconds, on persona messages answering a user message;
        see `turns_frame`), sessions in the frame's order. `attrs` counts what happened:
        sessions (asked about), transcripts, not_found, transcripts_disabled, failed,
        invalid_id, zero_data_retention (sessions of the frame that keep none, not asked
        about), requests (transcripts asked of the API), from_cache, sample.

    Raises
    ------
    ValueError
        For a bad `sample`, `cache`, `progress`, `strata` or `seed`, before any request.
    TypeError
        When `sessions_df` is not a DataFrame, or `client` not a session source.
    AuthenticationError
        When the API refuses the key (nothing else would succeed either); transcripts read
        before it are still cached.
    """
    if not isinstance(sessions_df, pd.DataFrame):
        raise TypeError(f"sessions_df must be a sessions DataFrame (from fetch_sessions), "
                        f"got {type(sessions_df).__name__}")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, (int, np.integer))
                               or sample < 0):
        raise ValueError(f"sample={sample!r} is not valid: expected None (every session) or a whole number >= 0")
    if isinstance(strata, str):
        strata = (strata,)
    if not all(isinstance(c, str) for c in strata):
        raise ValueError(f"strata={strata!r} is not valid: expected column names, e.g. ('engine_version',)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid: expected a whole number >= 0")
    if cache is not None and cache is not False and not (cache is True or (
            isinstance(cache, (str, Path)) and str(cache))):
        raise ValueError(f"cache={cache!r} is not valid: expected None/False (no cache), "
                         "True (the per-user cache directory) or a directory path")
    show = show_progress(progress)
    source = check_source(connect() if client is None else client, allow_async=True)
    gate = source.redaction
    reader = gate.raw if gate is not None else source   # the cache only ever holds raw transcripts

    frame = sessions_df[~sessions_df.index.duplicated()]
    zdr = (frame["zero_data_retention"].fillna(False).to_numpy(dtype=bool)
           if "zero_data_retention" in frame.columns else np.zeros(len(frame), dtype=bool))
    pool = frame[~zdr]
    chosen = pool.index if sample is None else sample_sessions(pool, int(sample), strata, int(seed))
    ids = [str(sid) for sid in chosen]
    ended = set(map(str, pool.index[ended_mask(pool)])) if len(pool) else set()
    counts = dict.fromkeys(OUTCOMES, 0)
    counts["zero_data_retention"] = int(zdr.sum())

    store = None
    cached_turns, outcomes = empty_turns(), dict[str, str]()
    if cache is not None and cache is not False:
        orgs = frame["organization_id"].dropna() if "organization_id" in frame.columns else pd.Series([])
        store = open_transcript_store(cache, reader.base_url, str(orgs.iloc[0]) if len(orgs) else None)
        cached_turns, outcomes = store.load([sid for sid in ids if sid in ended])
    todo = [sid for sid in ids if sid not in outcomes]
    from_cache = len(ids) - len(todo)

    fresh: dict[str, tuple[str, Any]] = {}
    try:
        _fetch_each(reader, todo, fresh, show)
    finally:
        got = [(sid, body) for sid, (outcome, body) in fresh.items() if outcome == "transcript"]
        fresh_turns = turns_frame([body for _, body in got], session_ids=[sid for sid, _ in got])
        if store is not None:
            store.save(fresh_turns, {sid: outcome for sid, (outcome, _) in fresh.items() if sid in ended})
    for outcome in [*outcomes.values(), *(outcome for outcome, _ in fresh.values())]:
        counts[outcome] += 1
    failed = [f"{sid} ({detail})" for sid, (outcome, detail) in fresh.items() if outcome == "failed"]
    if failed:
        warnings.warn(f"fetch_transcripts: {len(failed)} of {len(ids)} transcript(s) could not be read "
                      f"after retries: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}; "
                      "they are left out (call again to retry them)", TranscriptFetchWarning, stacklevel=2)

    turns = _in_order(concat_turns([cached_turns, fresh_turns]), ids)
    if gate is not None:
        turns = gate.turns_frame(turns)
    counts["transcripts"] = counts.pop("transcript")
    turns.attrs.update(sessions=len(ids), **counts, requests=len(fresh), from_cache=from_cache,
                       sample=sample)
    return turns


class TranscriptFetchWarning(UserWarning):
    """Some transcripts could not be read after the client's retries; the rest were kept."""


def _classify(exc: BaseException) -> tuple[str, Any]:
    if isinstance(exc, InvalidSessionId):
        return "invalid_id", None
    if isinstance(exc, NotFoundError):
        return "not_found", None
    if isinstance(exc, AuthenticationError):
        raise exc
    if isinstance(exc, (AnamAPIError, AnamConnectionError)):
        return "failed", type(exc).__name__
    raise exc


def _answer(result: TranscriptResult) -> tuple[str, Any]:
    if isinstance(result, BaseException):
        return _classify(result)
    if not isinstance(result, Mapping):
        return "failed", "not a JSON object"
    if result.get("transcriptsEnabled") is False:
        return "transcripts_disabled", None
    return "transcript", result


def _fetch_each(reader: SessionSource | AsyncSessionSource, ids: list[str],
                out: dict[str, tuple[str, Any]], show: bool) -> None:
    """Ask for every transcript in `ids` through the client's `iter_transcripts`, filling
    `out` as answers arrive (kept on interruption)."""
    if not ids:
        return
    bar = None
    if show:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(ids), desc="Fetching transcripts", unit=" transcripts")
    results: Iterator[tuple[str, TranscriptResult]] = (
        reader.iter_transcripts(ids) if isinstance(reader, SessionSource)
        else RUNNER.iterate(reader.iter_transcripts(ids)))
    try:
        for sid, result in results:
            out[sid] = _answer(result)
            if bar is not None:
                bar.update()
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        if bar is not None:
            bar.close()


def _in_order(turns: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """Sessions in the order asked for, messages in transcript order."""
    if turns.empty:
        return turns
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids, dtype=object))
    where = position.reindex(turns["session_id"].astype(object).to_numpy()).to_numpy()
    order = np.lexsort((turns["turn_index"].to_numpy(), np.nan_to_num(where, nan=len(ids))))
    return turns.iloc[order].reset_index(drop=True).rename_axis("turn")
