"""A persistent, content-addressed store of embeddings keyed by (model id, text hash).

SQLite in WAL mode: safe across processes (sweep workers), atomic per batch, and nothing to install.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from ragtune import sqlite_files
from ragtune.store import sql_in, sql_text


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class _Store:
    """A SQLite file per store, one connection per thread; a file found damaged (on open, or by a failing read or
    write) is quarantined and replaced by an empty one (``ragtune.sqlite_files``)."""

    what = "cache"
    schema: tuple[str, ...] = ()

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._generation = 0  # bumped when the file is replaced: every thread reconnects
        self._reset_lock = threading.Lock()
        sqlite_files.check(self.path, self.what)
        self._create()

    def _create(self) -> None:
        with self._conn() as con:
            for statement in self.schema:
                con.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or self._local.generation != self._generation:
            con = sqlite3.connect(self.path, timeout=60)
            con.execute("PRAGMA page_size=16384")  # takes effect only in a new file, before WAL is switched on
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con, self._local.generation = con, self._generation
        return con

    def _recover(self, exc: BaseException, generation: int) -> None:
        """After a damaged-file error: quarantine the file (once, whichever thread sees it first), start afresh."""
        if not sqlite_files.damaged(exc):
            raise exc
        with self._reset_lock:
            if self._generation == generation:
                old = getattr(self._local, "con", None)
                if old is not None:
                    old.close()
                sqlite_files.quarantine(self.path, self.what, str(exc))
                self._generation += 1
                self._create()


class EmbeddingCache(_Store):
    """Vectors in a plain rowid table with a unique index on (model, hash): rows of 1.5 KB are appended, not inserted
    into a B-tree keyed by random hashes (a WITHOUT ROWID table, the first layout: 4x slower to write and to read,
    twice the size on disk; caches in that layout are migrated on open). Pages of 16 KiB for new files."""

    what = "embedding cache"
    schema = ("CREATE TABLE IF NOT EXISTS vectors ("
              " model TEXT NOT NULL, hash BLOB NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL)",
              "CREATE UNIQUE INDEX IF NOT EXISTS vectors_key ON vectors (model, hash)")

    def __init__(self, path: str | Path):
        super().__init__(path)
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

    def get_many(self, model: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The vectors found; a damaged file is quarantined and everything is a miss."""
        generation = self._generation
        try:
            return self._get_many(model, hashes)
        except sqlite3.DatabaseError as exc:
            self._recover(exc, generation)
            return {}

    def _get_many(self, model: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
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
        for attempt in (0, 1):  # a damaged file is replaced, then the write goes to the fresh one
            generation = self._generation
            try:
                with self._conn() as con:  # one transaction: all or nothing
                    con.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
                return
            except sqlite3.DatabaseError as exc:
                if attempt:
                    raise
                self._recover(exc, generation)

    def count(self, model: str | None = None) -> int:
        con = self._conn()
        if model is None:
            return con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return con.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", (model,)).fetchone()[0]


class ResponseCache(_Store):
    """Replies of hosted models (generations at temperature 0, judge verdicts) by the hash of their request: a rerun
    of the same evaluation makes no calls. SQLite in WAL mode, like the embedding cache."""

    what = "response cache"
    schema = ("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",)

    def get(self, key: str) -> str | None:
        generation = self._generation
        try:
            row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._recover(exc, generation)
            return None
        return row[0] if row else None

    def put(self, key: str, value: str) -> None:
        generation = self._generation
        try:
            with self._conn() as con:
                con.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, value))
        except sqlite3.DatabaseError as exc:
            self._recover(exc, generation)  # a reply left out of a damaged cache is asked for again next time


class PairScoreCache(_Store):
    """Pair scores (a re-ranker's, a claim verifier's) by (model id, query hash, passage hash), each with the model
    time that computing it took, so that a score read back still says what it costs (latency and cost per query stay
    what the model spends)."""

    what = "pair-score cache"
    schema = ("CREATE TABLE IF NOT EXISTS pairs ("
              " model TEXT NOT NULL, query BLOB NOT NULL, passage BLOB NOT NULL, score REAL NOT NULL, ms REAL NOT NULL)",
              "CREATE UNIQUE INDEX IF NOT EXISTS pairs_key ON pairs (model, query, passage)")

    def get_many(self, model: str, query: bytes, passages: Sequence[bytes]) -> dict[bytes, tuple[float, float]]:
        """passage hash -> (score, ms) for the pairs found; a damaged file is quarantined and everything is a miss."""
        generation = self._generation
        found: dict[bytes, tuple[float, float]] = {}
        try:
            con = self._conn()
            for i in range(0, len(passages), 900):  # below SQLite's bound-parameter limit
                part = passages[i : i + 900]
                rows = con.execute(f"SELECT passage, score, ms FROM pairs WHERE model = ? AND query = ? AND passage "
                                   f"IN ({','.join('?' * len(part))})", (model, query, *part))
                found.update((p, (s, ms)) for p, s, ms in rows)
        except sqlite3.DatabaseError as exc:
            self._recover(exc, generation)
            return {}
        return found

    def put_many(self, model: str, query: bytes, items: Iterable[tuple[bytes, float, float]]) -> None:
        """(passage hash, score, ms) per pair, in one transaction; a pair left out of a damaged file is scored again."""
        rows = [(model, query, p, float(s), float(ms)) for p, s, ms in items]
        generation = self._generation
        try:
            with self._conn() as con:
                con.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.DatabaseError as exc:
            self._recover(exc, generation)

    def count(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM pairs").fetchone()[0]

    def scores(self, model: str, queries: Sequence[str], passages: Sequence[str],
               compute: Callable[[list[str], list[str]], Sequence[float]]) -> tuple[np.ndarray, float, int]:
        """The score of each (query, passage) pair: read back where stored, the distinct others computed by
        ``compute(queries, passages)`` in one call and stored with the model time each took. Returns the scores, the
        stored model time (ms) of the pairs read back, and how many pairs were computed."""
        keys = [(text_hash(q), text_hash(p)) for q, p in zip(queries, passages)]
        by_query: dict[bytes, dict[bytes, None]] = {}
        for q, p in keys:
            by_query.setdefault(q, {})[p] = None
        found = {(q, p): hit for q, ps in by_query.items() for p, hit in self.get_many(model, q, list(ps)).items()}
        missing = {k: i for i, k in enumerate(keys) if k not in found}  # distinct pairs, first occurrence
        if missing:
            t0 = time.perf_counter()
            scores = compute([queries[i] for i in missing.values()], [passages[i] for i in missing.values()])
            each = (time.perf_counter() - t0) * 1000 / len(missing)
            computed = {k: (float(s), each) for k, s in zip(missing, scores)}
            for q in dict.fromkeys(q for q, _ in computed):
                self.put_many(model, q, [(p, s, ms) for (c, p), (s, ms) in computed.items() if c == q])
            found.update(computed)
        saved = sum(found[k][1] for k in keys if k not in missing)
        return np.array([found[k][0] for k in keys], dtype=np.float32), saved, len(missing)


class LanceEmbeddingCache:
    """The embedding cache as a LanceDB table (``ragtune_embeddings``) in the workspace's database, for runners on
    several machines (``RAGTUNE_CACHE=lance``): it lives on whatever URI the tables do (a shared folder, an object
    store), every write is an append commit (Lance retries a commit that races another writer's), and every read
    sees the latest commit. Two writers that embed the same text at the same moment both store it; it is read once.
    The same interface as ``EmbeddingCache``."""

    what = "embedding cache"
    name = "ragtune_embeddings"
    schema = pa.schema([("model", pa.string()), ("hash", pa.string()), ("vector", pa.list_(pa.float32()))])
    step = 1000  # hashes per look-up query

    def __init__(self, db):
        self.db = db
        self.table = db.create_table(self.name, schema=self.schema, exist_ok=True)

    def get_many(self, model: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        self.table.checkout_latest()  # other writers' commits since the last read
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(hashes), self.step):
            part = sql_in("hash", (h.hex() for h in hashes[i : i + self.step]))
            rows = (self.table.search().where(f"model = {sql_text(model)} AND {part}")
                    .select(["hash", "vector"]).limit(None).to_arrow())
            flat = rows["vector"].combine_chunks()
            values, offsets = flat.values.to_numpy(), flat.offsets.to_numpy()
            for j, h in enumerate(rows["hash"].to_pylist()):
                found.setdefault(bytes.fromhex(h), values[offsets[j] : offsets[j + 1]])
        return found

    def put_many(self, model: str, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        items = list(items)
        if not items:
            return
        vectors = [np.ascontiguousarray(v, dtype=np.float32).reshape(-1) for _, v in items]
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in vectors])]).astype(np.int32)
        column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(vectors), pa.float32()))
        self.table.add(pa.table([pa.array([model] * len(items)), pa.array([h.hex() for h, _ in items]), column],
                                schema=self.schema))

    def count(self, model: str | None = None) -> int:
        """Distinct texts stored (for ``model``, or for all models)."""
        self.table.checkout_latest()
        query = self.table.search().select(["model", "hash"]).limit(None)
        if model is not None:
            query = query.where(f"model = {sql_text(model)}")
        rows = query.to_arrow()
        return len(set(zip(rows["model"].to_pylist(), rows["hash"].to_pylist())))
