"""The audit log: one JSON line per request (answered, cached, blocked or refused), in ``<home>/audit/``, one file
per day. A record says what the answer saw: the chunks with their text hashes and scores, the table version, the
configuration, the prompt version, the model, the guard verdicts. Secrets are scrubbed from every text field."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

from ragtune.redact import scrub
from ragtune.store import sql_in

#: characters that must not reach a log raw: C1 controls, bidi overrides, line separators, lone surrogates
_UNSAFE = re.compile("[\u0080-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")


class AuditLog:
    def __init__(self, folder: Path, fsync: bool = False):
        self.folder, self.fsync = Path(folder), fsync
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        """Append one record: one write of one line under a lock shared with other processes (then fsync, if
        asked: a record then survives a power cut too, not only a crash of the process)."""
        record = scrub({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **record})
        text = json.dumps(record, ensure_ascii=False, default=str)
        line = (_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) + "\n").encode("utf-8")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"audit-{record['time'][:10]}.jsonl"
        with self._lock, open(path, "ab+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if handle.seek(0, os.SEEK_END) and (handle.seek(-1, os.SEEK_END), handle.read(1))[1] != b"\n":
                    line = b"\n" + line  # a line torn by a crash stays alone; this record starts its own line
                handle.write(line)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def records(self, damaged: list[str] | None = None):
        """Every record, oldest first; a line that is not a whole record (torn by a crash, edited by hand) is passed
        over and named in ``damaged`` (``path:line``)."""
        for path in sorted(self.folder.glob("audit-*.jsonl")):
            with open(path, encoding="utf-8", errors="replace") as handle:
                for lineno, line in enumerate(handle, 1):
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        record = None
                    if isinstance(record, dict):
                        yield record
                    elif damaged is not None:
                        damaged.append(f"{path}:{lineno}")



def digest(payload: str | bytes, prefix: int = 64) -> dict:
    """What the log keeps of a refused payload: its length, its hash and a short prefix, never the whole."""
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else bytes(payload)
    text = data[: prefix * 4].decode("utf-8", "replace")[:prefix]
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "prefix": "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                              for c in text)}


def seen_chunks(db, record: dict) -> list[dict]:
    """The chunks a request's generator was given, read back from the table version it was served from: each with
    its text and whether that text still has the hash recorded at the time."""
    import hashlib

    chunks = [c for c in record.get("chunks", []) if c.get("given_to_generator")]
    if not chunks:
        return []
    table = db.open_table(record["table"])
    table.checkout(int(record["version"]))
    rows = (table.search().where(sql_in("id", [c["chunk_id"] for c in chunks])).select(["id", "text"])
            .limit(len(chunks)).to_list())
    texts = {r["id"]: r["text"] for r in rows}
    return [{**c, "text": texts.get(c["chunk_id"], ""),
             "unchanged": hashlib.sha256(texts.get(c["chunk_id"], "").encode()).hexdigest() == c["text_sha256"]}
            for c in chunks]
