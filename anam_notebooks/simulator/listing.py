"""Newest-first paging and filtering over a fleet, with indices so a page costs milliseconds.

Records are stored oldest first, so live traffic appends; pages are read from the far end.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable


class SessionIndex:
    """Ids in arrival order plus lookups for the exact filters and the search text."""

    def __init__(self, sessions_newest_first: list[dict]) -> None:
        self.ids: list[str] = []
        self.text: dict[str, str] = {}
        self.by_persona: dict[str, list[str]] = defaultdict(list)
        self.by_key: dict[str, list[str]] = defaultdict(list)
        self.extend(reversed(sessions_newest_first))

    def extend(self, records_oldest_first: Iterable[dict]) -> None:
        for record in records_oldest_first:
            sid = record["id"]
            self.ids.append(sid)
            label = record.get("clientLabel")
            self.text[sid] = f"{sid}\n{label if isinstance(label, str) else ''}".lower()
            if isinstance(record.get("personaId"), str):
                self.by_persona[record["personaId"].lower()].append(sid)
            if isinstance(record.get("apiKeyId"), str):
                self.by_key[record["apiKeyId"].lower()].append(sid)

    def matching(self, search: str | None, persona_id: str | None, api_key_id: str | None) -> list[str]:
        """Ids passing every given filter, oldest first."""
        pool = self.ids
        if persona_id is not None:
            pool = self.by_persona.get(persona_id.lower(), [])
        if api_key_id is not None:
            keyed = self.by_key.get(api_key_id.lower(), [])
            if persona_id is None:
                pool = keyed
            else:
                wanted = set(keyed)
                pool = [sid for sid in pool if sid in wanted]
        if search:
            needle = search.lower()
            pool = [sid for sid in pool if needle in self.text[sid]]
        return pool


def page_of(ids_oldest_first: list[str], page: int, per_page: int) -> tuple[list[str], dict]:
    """One newest-first page and its `meta` block, as the API reports it."""
    total = len(ids_oldest_first)
    last_page = max(1, math.ceil(total / per_page))
    hi = total - (page - 1) * per_page
    lo = max(0, hi - per_page)
    chosen = ids_oldest_first[lo:hi][::-1] if hi > 0 else []
    meta = {"total": total, "lastPage": last_page, "currentPage": page, "perPage": per_page,
            "prev": page - 1 if page > 1 else None, "next": page + 1 if page < last_page else None}
    return chosen, meta
