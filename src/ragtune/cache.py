"""A persistent, content-addressed store of embeddings keyed by (model id, text hash).

SQLite in WAL mode: safe across processes (sweep workers), atomic per batch, and nothing to install.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingCache:
    """Vectors in a plain rowid table with a unique index on (model, hash): rows of 1.5 KB are appended, not inserted
    into a B-tree keyed by random hashes (a WITHOUT ROWID table, the first layout: 4x slower to write and to read,
    twice the size on disk; caches in that layout are migrated on open). Pages of 16 KiB for new files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS vectors ("
                        " model TEXT NOT NULL, hash BLOB NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL)")
            con.execute("CREATE UNIQUE INDEX IF NOT EXISTS vectors_key ON vectors (model, hash)")
        self._migrate()

    def _migrate(self) -> None:
        """Move a first-layout table's vectors over, once, under a write lock (other processes may open it too)."""
        con, old = self._conn(), "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'embeddings'"
        if not con.execute(old).fetchone():
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute(old).fetchone():
                con.execute("INSERT OR IGNORE INTO vectors SELECT model, hash, dim, vector FROM embeddings")
                con.execute("DROP TABLE embeddings")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60)
            con.execute("PRAGMA page_size=16384")  # takes effect only in a new file, before WAL is switched on
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get_many(self, model: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        con = self._conn()
        step = 900  # below SQLite's bound-parameter limit
        for i in range(0, len(hashes), step):
            part = hashes[i : i + step]
            marks = ",".join("?" * len(part))
            rows = con.execute(
                f"SELECT hash, vector FROM vectors WHERE model = ? AND hash IN ({marks})", (model, *part)
            )
            for h, blob in rows:
                found[h] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, model: str, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        rows = [(model, h, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for h, v in items]
        with self._conn() as con:  # one transaction: all or nothing
            con.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)

    def count(self, model: str | None = None) -> int:
        con = self._conn()
        if model is None:
            return con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return con.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", (model,)).fetchone()[0]


class ResponseCache:
    """Replies of hosted models (generations at temperature 0, judge verdicts) by the hash of their request: a rerun
    of the same evaluation makes no calls. SQLite in WAL mode, like the embedding cache."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")

    _conn = EmbeddingCache._conn

    def get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str) -> None:
        with self._conn() as con:
            con.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, value))
