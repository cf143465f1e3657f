"""Answers already given, by (published table, version, normalised question, filters).

An LRU in the process; with ``path`` also a SQLite table that the processes of ``ragtune serve --workers N`` share,
so a question one worker answered is a hit in every other. Keys name the published version, so a new publication is
never served an old answer. A cache never fails a request: a SQLite error is a miss, or a write left out; a damaged
file is quarantined and replaced by an empty one (``ragtune.sqlite_files``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

from ragtune import sqlite_files

_SCHEMA = "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, response TEXT NOT NULL)"


class AnswerCache:
    def __init__(self, size: int, path: Path | None = None):
        self.size, self.path, self.hits = size, path, 0
        self._lock = threading.Lock()
        self._local: OrderedDict[str, dict] = OrderedDict()
        self._conns = threading.local()
        self._generation = 0
        if path is not None and size:
            sqlite_files.check(path, "answer cache")
            with self._conn() as con:
                con.execute(_SCHEMA)

    @staticmethod
    def key(table: str, version: int, question: str, filters: dict | None) -> str:
        return json.dumps([table, version, " ".join(question.lower().split()), filters or {}], sort_keys=True)

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._conns, "con", None)
        if con is None or self._conns.generation != self._generation:
            # a writer that finds the file locked gives up at once: the answer simply stays out of the cache
            con = sqlite3.connect(self.path, timeout=0.05)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=OFF")  # a lost cache entry costs one recomputation
            self._conns.con, self._conns.generation = con, self._generation
        return con

    def _failed(self, exc: sqlite3.Error, generation: int) -> None:
        """A damaged file is replaced by an empty one (once); any other error just leaves the cache out."""
        if not sqlite_files.damaged(exc):
            return
        with self._lock:
            if self._generation != generation:
                return
            sqlite_files.quarantine(self.path, "answer cache", str(exc))
            self._generation += 1
        try:
            with self._conn() as con:
                con.execute(_SCHEMA)
        except sqlite3.Error:
            pass

    def get(self, key: str) -> dict | None:
        if not self.size:
            return None
        with self._lock:
            found = self._local.get(key)
            if found is not None:
                self._local.move_to_end(key)
        if found is None and self.path is not None:
            generation = self._generation
            try:
                row = self._conn().execute("SELECT response FROM answers WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc, generation)
                row = None
            if row is not None:
                found = json.loads(row[0])
                self._remember(key, found)
        if found is not None:
            with self._lock:
                self.hits += 1
        return found

    def put(self, key: str, response: dict) -> None:
        if not self.size:
            return
        self._remember(key, response)
        if self.path is not None:
            generation = self._generation
            try:
                with self._conn() as con:  # newest rows last; keep the newest ``size``
                    cur = con.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(response)))
                    con.execute("DELETE FROM answers WHERE rowid <= ?", (cur.lastrowid - self.size,))
            except sqlite3.Error as exc:
                self._failed(exc, generation)

    def _remember(self, key: str, response: dict) -> None:
        with self._lock:
            self._local[key] = response
            self._local.move_to_end(key)
            while len(self._local) > self.size:
                self._local.popitem(last=False)

    def forget_local(self) -> None:
        """Drop this process's copies (a new publication: their keys will not be asked for again)."""
        with self._lock:
            self._local.clear()
