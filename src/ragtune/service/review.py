"""The human-review queue: answers held back (low faithfulness, a high-stakes topic) wait here for a reviewer, who
approves or rejects them with a note. SQLite, safe across processes; every decision is also written to the audit
log next to the request it concerns."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path

from ragtune.errors import DataError

STATUSES = ("pending", "approved", "rejected")


class ReviewQueue:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS reviews (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, "
                        "created_at TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, citations TEXT, "
                        "reasons TEXT NOT NULL, status TEXT NOT NULL, reviewer TEXT, note TEXT, decided_at TEXT)")

    def _conn(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def add(self, request_id: str, question: str, answer: str, citations: list, reasons: list[str]) -> str:
        review_id = uuid.uuid4().hex[:12]
        with self._conn() as con:
            con.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL)",
                        (review_id, request_id, _now(), question, answer, json.dumps(citations), json.dumps(reasons)))
        return review_id

    def get(self, review_id: str) -> dict | None:
        with self._conn() as con:
            row = con.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
        return _record(row) if row else None

    def list(self, status: str | None = "pending") -> list[dict]:
        if status is not None and status not in STATUSES:
            raise DataError(f"unknown review status {status!r}; expected one of {', '.join(STATUSES)}")
        with self._conn() as con:
            rows = (con.execute("SELECT * FROM reviews WHERE status = ? ORDER BY created_at", (status,)) if status
                    else con.execute("SELECT * FROM reviews ORDER BY created_at"))
            return [_record(r) for r in rows]

    def decide(self, review_id: str, approve: bool, reviewer: str, note: str = "") -> dict:
        status = "approved" if approve else "rejected"
        with self._conn() as con:
            cur = con.execute("UPDATE reviews SET status = ?, reviewer = ?, note = ?, decided_at = ? "
                              "WHERE id = ? AND status = 'pending'", (status, reviewer, note, _now(), review_id))
            if cur.rowcount == 0:
                current = con.execute("SELECT status FROM reviews WHERE id = ?", (review_id,)).fetchone()
                raise DataError(f"review {review_id}: " + ("no such review" if current is None
                                                           else f"already {current['status']}"))
        return self.get(review_id)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record(row) -> dict:
    out = dict(row)
    out["citations"], out["reasons"] = json.loads(out["citations"] or "[]"), json.loads(out["reasons"])
    return out
