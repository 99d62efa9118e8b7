"""Writing a file so that readers see the old one or the new one, never half of either."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(target: Path, write: Callable[[BinaryIO], object], *, name_by_checksum: bool = False) -> Path:
    """Write `target` via a temp file in its folder, fsync and os.replace: a writer that dies
    midway leaves the old file (or none) in place, never half a file. Returns the path written.

    With `name_by_checksum`, "{sha256}" in the target's name is replaced by the SHA-256 of the
    bytes written, so one rename brings a checksum and the content it vouches for.

    Temp files a killed writer left in the folder (``.*.tmp``) are removed first: call it with
    the folder's lock held.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(".*.tmp"):  # left by a killed writer (we hold the lock)
        leftover.unlink(missing_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        if name_by_checksum:
            with open(temp, "rb") as written:
                digest = hashlib.file_digest(written, "sha256").hexdigest()
            target = target.with_name(target.name.replace("{sha256}", digest))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (not possible, and not needed, on Windows)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
