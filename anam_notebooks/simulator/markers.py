"""The marker-text scenario: a copy of a fleet whose every piece of text a customer or an end
user writes is a unique, greppable marker, so a test can prove none of it reaches a redacted
output, and that an unredacted read still returns all of it."""

from __future__ import annotations

import copy

from .fleet import Fleet

MARKER_PREFIX = "ZQMARK"
LABELS = 6   # distinct client labels: few enough that analyses still group by label


def plant_marker_text(fleet: Fleet, *, prefix: str = MARKER_PREFIX) -> Fleet:
    """A copy of `fleet` whose free text is made of markers ``<prefix><KIND><n>``.

    Marked: client labels (a few shared ones), persona names, system prompts, personality,
    filler phrases, knowledge and tool names and descriptions and the persona's metadata
    (added to every persona config), an extra `clientMetadata` note, and every transcript
    line and transcript persona name. Counts, statuses, times, engines and product names are
    those of `fleet`, so its incidents are still there.

    Parameters
    ----------
    fleet
        The fleet to copy (from `generate_fleet`); it is left untouched.
    prefix
        What every marker starts with (letters only, so escaping never changes it).

    Returns
    -------
    Fleet
        A new fleet with the same sessions, incidents and seed, its text replaced.

    Raises
    ------
    ValueError
        When `prefix` is not letters only.
    """
    if not (isinstance(prefix, str) and prefix.isalpha() and prefix.isascii()):
        raise ValueError(f"prefix={prefix!r} is not valid: expected ASCII letters, e.g. {MARKER_PREFIX!r}")
    personas: dict[object, str] = {}
    sessions = []
    for n, record in enumerate(fleet.sessions):
        marked = copy.deepcopy(record)
        if marked.get("clientLabel") is not None:
            marked["clientLabel"] = f"{prefix}LABEL{n % LABELS}"
        config = marked.get("personaConfig")
        if isinstance(config, dict):
            name = personas.setdefault(config.get("name"), f"{prefix}PERSONA{len(personas)}")
            config.update(
                name=name, systemPrompt=f"{prefix}PROMPT{n}", personality=f"{prefix}PERSONALITY{n}",
                fillerPhrases=[f"{prefix}FILLER{n}a", f"{prefix}FILLER{n}b"],
                metadata={"note": f"{prefix}PERSONAMETA{n}"},
                knowledge=[{"name": f"{prefix}KNOWLEDGENAME{n}", "description": f"{prefix}KNOWLEDGE{n}"}],
                tools=[{"type": "function", "name": f"{prefix}TOOLNAME{n}",
                        "description": f"{prefix}TOOL{n}"}])
        meta = marked.get("clientMetadata")
        if isinstance(meta, dict):
            meta["customerNote"] = f"{prefix}CLIENTMETA{n}"
        sessions.append(marked)
    transcripts = {}
    for sid in fleet.transcripts:
        body = copy.deepcopy(fleet.transcripts[sid])
        body["personaName"] = personas.get(body.get("personaName"), f"{prefix}PERSONA")
        for i, message in enumerate(body.get("messages") or []):
            message["message"] = f"{prefix}LINE{sid[:8]}x{i}"
        transcripts[sid] = body
    return Fleet(sessions, transcripts, fleet.incidents, seed=fleet.seed,
                 latency_regressions=fleet.latency_regressions)
