"""Reproducible stratified samples of sessions, so small groups are not starved.

Every session gets a pseudo-random rank from a keyed hash of its id and the seed: the same
sessions and seed give the same sample on any machine, and a session picked once stays picked
when the window grows a little (its rank does not depend on its neighbours). The budget is
shared out over strata (combinations of the `strata` columns, missing values a stratum of their
own): each stratum first gets an equal floor of half the budget divided by the number of strata
(or all of its sessions, if fewer), the rest goes out in proportion to size. A version that
served 2 % of the traffic thus still brings enough sessions to be compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def sample_sessions(frame: pd.DataFrame, size: int, strata: Sequence[str] = (), seed: int = 0) -> pd.Index:
    """Ids of a reproducible stratified sample of `size` sessions of `frame` (all when fewer)."""
    if size >= len(frame):
        return frame.index
    key = f"anam{seed:012d}"[-16:]
    rank = pd.util.hash_pandas_object(pd.Series(frame.index.astype(str), dtype=object), index=False,
                                      hash_key=key).to_numpy()
    cols = [c for c in strata if c in frame.columns]
    if cols:
        labels = [frame[c].astype(object).where(frame[c].notna(), None).map(str).to_numpy() for c in cols]
        codes = pd.MultiIndex.from_arrays(labels).codes if len(labels) > 1 else [pd.factorize(labels[0])[0]]
        stratum = np.zeros(len(frame), dtype=np.int64)
        for c in codes:
            stratum = stratum * (int(np.max(c, initial=0)) + 1) + np.asarray(c, dtype=np.int64)
        _, stratum = np.unique(stratum, return_inverse=True)
    else:
        stratum = np.zeros(len(frame), dtype=np.int64)
    sizes = np.bincount(stratum)
    quota = allocate(sizes, size)
    order = np.lexsort((rank, stratum))              # by stratum, then by rank
    position = np.empty(len(frame), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position[order] = np.arange(len(frame)) - np.repeat(starts, sizes)
    chosen = position < quota[stratum]
    return frame.index[chosen]


def allocate(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Sessions to take per stratum: an equal floor, then the rest in proportion to size."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if budget >= sizes.sum():
        return sizes.copy()
    strata = len(sizes)
    if strata >= budget:  # one each from the largest strata
        quota = np.zeros(strata, dtype=np.int64)
        quota[np.argsort(-sizes, kind="stable")[:budget]] = 1
        return quota
    quota = np.minimum(sizes, max(1, budget // (2 * strata)))
    left = budget - int(quota.sum())
    while left > 0:
        room = sizes - quota
        share = left * room / room.sum()
        give = np.minimum(np.floor(share).astype(np.int64), room)
        if give.sum() == 0:  # hand the last few out by largest remainder
            give = np.zeros(strata, dtype=np.int64)
            give[np.argsort(-(share - np.floor(share)) - (room > 0), kind="stable")[:left]] = 1
            give = np.minimum(give, room)
        quota += give
        left = budget - int(quota.sum())
    return quota
