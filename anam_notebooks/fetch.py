"""The one place that ties the layers together: `connect` picks the API or the simulator,
`fetch_sessions` runs the client, the store and the frame builder for a time window."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .api.client import AnamClient
from .api.config import API_KEY_ENV, api_key_from_env
from .api.errors import ConfigurationError
from .api.ids import check_search, normalize_uuid_filter
from .data.fields import one_time
from .data.progress import Progress, iterate_with_progress, show_progress
from .data.sessions import newest_first, normalise_sessions_frame, sessions_frame
from .data.store import open_store
from .data.timespan import TimeBound, parse_window
from .simulator import DEMO_FLEET, demo_client

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



def fetch_sessions(client: Any = None, since: TimeBound = None, until: TimeBound = None,
                   persona_id: str | None = None, api_key_id: str | None = None,
                   search: str | None = None, limit: int | None = None,
                   cache: bool | str | Path | None = None, progress: Progress = True) -> pd.DataFrame:
    """Sessions in [since, until] as the typed frame, newest first.

    since/until: datetime (naive = UTC), ISO-8601 string, or a span before now ("90m", "24h",
    "7d", "2w"). Paging starts at the newest end and stops once past `since`. `limit` keeps the
    newest N. cache: None/False = none, True = the per-user cache directory, or a directory path;
    cached sessions are refreshed incrementally. progress: True shows a bar in Jupyter or on a
    terminal and stays quiet when headless; "always" forces it; False hides it.
    """
    start, end = parse_window(since, until)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit={limit!r} is not valid: expected None or a whole number >= 0")
    show = show_progress(progress)
    persona_id = normalize_uuid_filter("persona_id", persona_id)
    api_key_id = normalize_uuid_filter("api_key_id", api_key_id)
    search = check_search(search)
    if client is None:
        client = connect()
    if cache is not None and cache is not False:
        store = open_store(cache, client)
        frame = store.refresh(client, since=start, progress=show)
        frame = _filter_locally(frame, persona_id=persona_id, api_key_id=api_key_id, search=search)
    else:
        records = client.iter_sessions(search=search, persona_id=persona_id, api_key_id=api_key_id,
                                       per_page=100, since=start.to_pydatetime() if start is not None else None,
                                       stop=_limit_stop(limit, start, end))
        frame = sessions_frame(iterate_with_progress(records, show))
    frame = newest_first(_within(frame, start, end))
    # Only the categories of the rows returned: the same sessions give the same frame,
    # whether they were filtered by the server or from the cache.
    return normalise_sessions_frame(frame if limit is None else frame.head(limit))


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
