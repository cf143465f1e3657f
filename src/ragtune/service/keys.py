"""API keys of the query service: ``ragtune keys create NAME`` / ``list`` / ``revoke``.

A key is shown once, when it is created; the workspace keeps only its SHA-256 (``<home>/keys.sqlite``), its name
(the identity that rate limits and audit records use), and when it was created and revoked. Keys are sent as
``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from ragtune.errors import RagtuneError

PREFIX = "rt-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class KeyStoreError(RagtuneError):
    """A key operation that cannot be done (bad name, duplicate, unknown)."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, "
                    "created_at TEXT NOT NULL, revoked_at TEXT)")
        return con

    def _reader(self) -> sqlite3.Connection:
        """A connection per thread, kept open: the check on every request is one indexed lookup."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def create(self, name: str) -> str:
        """A new key for ``name``; the only time the key itself is seen."""
        if not _NAME.fullmatch(name or ""):
            raise KeyStoreError(f"key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
                            "letter or digit")
        key = PREFIX + secrets.token_urlsafe(32)
        con = self._connect()
        try:
            with con:
                con.execute("INSERT INTO keys VALUES (?, ?, ?, NULL)", (name, _hash(key), _now()))
        except sqlite3.IntegrityError:
            raise KeyStoreError(f"a key named {name!r} exists already (revoke it first, or pick another name)") from None
        finally:
            con.close()
        return key

    def revoke(self, name: str) -> None:
        con = self._connect()
        try:
            with con:
                done = con.execute("UPDATE keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                                   (_now(), name)).rowcount
        finally:
            con.close()
        if not done:
            raise KeyStoreError(f"no active key named {name!r}")

    def list(self) -> list[dict]:
        con = self._connect()
        try:
            rows = con.execute("SELECT name, created_at, revoked_at FROM keys ORDER BY created_at").fetchall()
        finally:
            con.close()
        return [{"name": n, "created_at": c, "revoked_at": r} for n, c, r in rows]

    def active(self) -> bool:
        """True when at least one key is not revoked."""
        if not self.path.exists():
            return False
        return self._reader().execute("SELECT 1 FROM keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None

    def identify(self, key: str) -> str | None:
        """The name of the active key ``key``, or None."""
        if not key or not self.path.exists():
            return None
        row = self._reader().execute("SELECT name FROM keys WHERE sha256 = ? AND revoked_at IS NULL",
                                     (_hash(key),)).fetchone()
        return row[0] if row else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
