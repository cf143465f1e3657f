"""SQLite files that notice damage: the caches (embeddings, hosted-model replies, answers) check their file when they
open it and whenever a read or write fails with a damaged-database error. A damaged file (truncated, overwritten,
half-copied) is moved aside as ``<name>.damaged-<time>`` together with its WAL, a warning names it, and an empty one
takes its place: a cache is worth recomputing, never worth serving wrong vectors from."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import warnings
from pathlib import Path

log = logging.getLogger("ragtune.cache")
#: files up to this size get a full ``PRAGMA quick_check`` on open; larger ones the structural checks only
FULL_CHECK_BYTES = 256 * 1024 * 1024


def problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` is damaged, or None (a missing or empty file is fine: it will be created)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            page_size = con.execute("PRAGMA page_size").fetchone()[0]
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            wal = Path(f"{path}-wal")
            if not (wal.exists() and wal.stat().st_size) and path.stat().st_size < page_size * pages:
                return f"{path.stat().st_size} bytes where its header promises {page_size * pages} (truncated)"
            if path.stat().st_size <= FULL_CHECK_BYTES:
                verdict = con.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    return verdict
            else:
                con.execute("SELECT name FROM sqlite_master").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) if damaged(exc) else None  # busy or locked is not damaged
    return None


def quarantine(path: Path, what: str, reason: str) -> Path:
    """Move a damaged file (and its -wal/-shm) aside; returns where it went."""
    path = Path(path)
    moved = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{moved}{suffix}")
    message = f"{what} {path} is damaged ({reason}): moved to {moved.name}; starting an empty one"
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return moved


def check(path: Path, what: str) -> None:
    """Quarantine the file at ``path`` if it is damaged."""
    reason = problem(path)
    if reason:
        quarantine(path, what, reason)


def damaged(exc: BaseException) -> bool:
    """True for the errors a damaged file raises ("database disk image is malformed", "file is not a database"),
    not for a busy, locked or full one."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
