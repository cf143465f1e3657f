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
    truncated: int | None = None  # new chunks longer than the vector model reads (None: not counted)
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
                "flagged_chunks": self.flagged, "truncated_chunks": self.truncated,
                "oldest_document_ingested_at": self.oldest, "table_version": self.version,
                "seconds": round(self.seconds, 3)}


def _held(table):
    """doc_id, doc_hash, ingested_at of every chunk the table holds, as Arrow columns (a table of a million chunks never
    becomes Python rows)."""
    return store.read_arrow(table, ["doc_id", "doc_hash", "ingested_at"])


def _compare(fresh: Freshness, digests: dict[str, bytes], held, rescan: bool = False) -> str | None:
    """Fill ``fresh``'s added, changed (corpus order), removed (sorted) and unchanged from the corpus's digests and
    the table's chunks (``held``; None: no table), in Arrow; ``rescan``: every held document counts as changed.
    Returns when the least recently ingested unchanged document came in."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if held is None:
        fresh.added = list(digests)
        return None
    ids = pa.array(list(digests), pa.string())
    hashes = pa.array([d.hex()[:16] for d in digests.values()], pa.string())
    where = pc.index_in(held["doc_id"], value_set=ids)  # each chunk's document in the corpus; null: removed
    same = pc.fill_null(pc.equal(held["doc_hash"], hashes.take(where)), False)
    if rescan:
        same = pc.and_(same, False)
    differs = pc.unique(held["doc_id"].filter(pc.and_not(pc.is_valid(where), same)))
    gone = pc.unique(held["doc_id"].filter(pc.is_null(where)))
    fresh.added = ids.filter(pc.invert(pc.is_in(ids, value_set=held["doc_id"]))).to_pylist()
    fresh.changed = ids.filter(pc.is_in(ids, value_set=differs)).to_pylist()
    fresh.removed = sorted(gone.to_pylist())
    fresh.unchanged = len(ids) - len(fresh.added) - len(fresh.changed)
    return pc.min(held["ingested_at"].filter(same)).as_py()


def sync(config, corpus: Corpus, db, name: str, embedder, index: bool = True) -> tuple[object, Freshness]:
    """Bring table ``name`` in line with ``corpus`` under ``config``; returns (table, freshness). With
    ``index=False`` the search indexes are left to a later ``store.reindex`` (the pipeline's separate index step)."""
    start = time.perf_counter()
    table = db.open_table(name) if name in store.table_names(db) else None
    rescan = table is not None and not store.has_scan(table)
    if rescan:  # written before chunks were scanned: every document is chunked, scanned and written again
        table.add_columns({"injection_score": "CAST(NULL AS FLOAT)", "injection_reasons": "CAST(NULL AS STRING)"})
    # each document's id and text digest (a streamed corpus holds them already: no pass over its file, and no second
    # map of them here); the documents to chunk are read again as they are written (a stream holds no texts)
    if isinstance(corpus.documents, DocumentStream):
        digests = corpus.documents.hashes
    else:
        digests = {d.id: text_digest(d.text) for d in corpus.documents}

    def hash_of(doc_id: str) -> str:
        return digests[doc_id].hex()[:16]

    fresh = Freshness(documents=len(digests))
    oldest_kept = _compare(fresh, digests, None if table is None else _held(table), rescan)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wanted = None if len(fresh.added) == len(digests) else {*fresh.added, *fresh.changed}  # None: every document

    def todo():
        return iter(corpus.documents) if wanted is None else (d for d in corpus.documents if d.id in wanted)

    # every chunk is embedded into the cache before the table is touched (a failing model changes nothing); the
    # write then reads the vectors back, step by step, in one commit
    seen = Encoded()
    for _ in encode_chunks(todo(), config, embedder, seen=seen):
        pass
    fresh.chunks_embedded = seen.chunks
    fresh.flagged, fresh.truncated = seen.flagged, seen.truncated
    gone = fresh.changed + fresh.removed
    if table is not None and gone:
        for i in range(0, len(gone), 500):
            table.delete(store.sql_in("doc_id", gone[i:i + 500]))
        faults.checkpoint("ingest.deleted")
    if seen.chunks:
        table = store.write_chunks(db, name, encode_chunks(todo(), config, embedder), table,
                                   extra=lambda c: {"doc_hash": hash_of(c.doc_id), "ingested_at": now})
    if index and table is not None and store.needs_index(table):
        store.reindex(table, config.retrieval)
    if table is not None:
        fresh.version = table.version
        stamps = [t for t in (oldest_kept, now if seen.chunks else None) if t is not None]
        fresh.oldest = min(stamps) if stamps else None
    fresh.seconds = time.perf_counter() - start
    return table, fresh
