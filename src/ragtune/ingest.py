"""Incremental ingestion into a long-lived table (the production index): documents are keyed by id and content
hash; new and changed documents are chunked and embedded, deleted ones removed, unchanged ones left alone.

Readers should not follow the table's latest version while it is being synced: a sync is several commits (delete,
add, re-index). Serving reads a published version instead (``ragtune.production.publish``), so a sync that dies midway is never
served.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ragtune import faults, store
from ragtune.data import Corpus, DocumentStream, text_digest
from ragtune.engine import Encoded, encode_chunks


@dataclass
class Freshness:
    """What a sync found and did; ``oldest`` is when the least recently ingested document came in."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0
    flagged: list[str] = field(default_factory=list)  # new chunks the injection scan flagged
    documents: int = 0
    oldest: str | None = None
    version: int = 0
    seconds: float = 0.0

    @property
    def stale(self) -> bool:
        """True when this sync had to change the table (it was stale before)."""
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> dict:
        return {"added": len(self.added), "changed": len(self.changed), "removed": len(self.removed),
                "unchanged": self.unchanged, "chunks_embedded": self.chunks_embedded, "documents": self.documents,
                "flagged_chunks": self.flagged,
                "oldest_document_ingested_at": self.oldest, "table_version": self.version,
                "seconds": round(self.seconds, 3)}


def doc_hash(text: str) -> str:
    return text_digest(text).hex()[:16]


def _state(table) -> dict[str, tuple[str, str]]:
    """doc id -> (content hash, ingested at) of what the table holds."""
    if table is None:
        return {}
    data = store.read_columns(table, ["doc_id", "doc_hash", "ingested_at"])
    return {r["doc_id"]: (r["doc_hash"], r["ingested_at"]) for r in data}


def sync(config, corpus: Corpus, db, name: str, embedder, index: bool = True) -> tuple[object, Freshness]:
    """Bring table ``name`` in line with ``corpus`` under ``config``; returns (table, freshness). With
    ``index=False`` the search indexes are left to a later ``store.reindex`` (the pipeline's separate index step)."""
    start = time.perf_counter()
    table = db.open_table(name) if name in store.table_names(db) else None
    held = _state(table)
    if table is not None and not store.has_scan(table):  # written before chunks were scanned: scan them all now
        table.add_columns({"injection_score": "CAST(NULL AS FLOAT)", "injection_reasons": "CAST(NULL AS STRING)"})
        held = {doc_id: ("rescan", stamp) for doc_id, (_, stamp) in held.items()}
    # each document's id and hash (a streamed corpus holds them already: no pass over its file); the documents to
    # chunk are read again as they are written (a streamed corpus holds no texts in memory)
    if isinstance(corpus.documents, DocumentStream):
        hashes = {doc_id: digest.hex()[:16] for doc_id, digest in corpus.documents.hashes.items()}
    else:
        hashes = {d.id: doc_hash(d.text) for d in corpus.documents}
    fresh = Freshness(documents=len(hashes))
    for doc_id, digest in hashes.items():
        if doc_id not in held:
            fresh.added.append(doc_id)
        elif held[doc_id][0] != digest:
            fresh.changed.append(doc_id)
        else:
            fresh.unchanged += 1
    fresh.removed = sorted(set(held) - set(hashes))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wanted = {*fresh.added, *fresh.changed}

    def todo():
        return (d for d in corpus.documents if d.id in wanted)

    # every chunk is embedded into the cache before the table is touched (a failing model changes nothing); the
    # write then reads the vectors back, step by step, in one commit
    seen = Encoded()
    for _ in encode_chunks(todo(), config, embedder, seen=seen):
        pass
    fresh.chunks_embedded = seen.chunks
    fresh.flagged = seen.flagged
    gone = fresh.changed + fresh.removed
    if table is not None and gone:
        for i in range(0, len(gone), 500):
            table.delete(store.sql_in("doc_id", gone[i:i + 500]))
        faults.checkpoint("ingest.deleted")
    if seen.chunks:
        table = store.write_chunks(db, name, encode_chunks(todo(), config, embedder), table,
                                   extra=lambda c: {"doc_hash": hashes[c.doc_id], "ingested_at": now})
    if index and table is not None and store.needs_index(table):
        store.reindex(table, config.retrieval)
    if table is not None:
        fresh.version = table.version
        changed = set(fresh.changed)
        kept = [held[i][1] for i in hashes if i in held and i not in changed]
        stamps = kept + ([now] if seen.chunks else [])
        fresh.oldest = min(stamps) if stamps else None
    fresh.seconds = time.perf_counter() - start
    return table, fresh
