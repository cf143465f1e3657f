"""Publication: what serving reads. A workspace publishes one (table, version) at a time.

The pointer ``<home>/published.json`` names the table and version; it is replaced atomically, so a reader sees the
previous publication or the next one, never a mix. Each published version also carries a LanceDB tag
(``published-v<N>``), which keeps LanceDB's clean-up from deleting it while it is served. The order is: tag the new
version, swap the pointer, drop older ``published-*`` tags. A publication killed between any two steps leaves the
previous one serving (at worst an extra tag, dropped by the next publication).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ragtune import faults, store
from ragtune.workspace import Workspace, atomic_write_text
from ragtune.errors import DataError

POINTER = "published.json"
TAG_PREFIX = "published-v"


def published(workspace: Workspace) -> dict | None:
    """The current publication (table, version, published_at and what the publisher recorded), or None."""
    path = workspace.home / POINTER
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if {"table", "version"} <= set(record) else _damaged(path)
    except json.JSONDecodeError:
        return _damaged(path)


def _damaged(path):
    raise DataError(f"{path}: damaged publication record (expected JSON with 'table' and 'version'); "
                    "publish again (`ploomber build`)")


def publish(workspace: Workspace, table, version: int | None = None, **info) -> dict:
    """Make ``version`` of ``table`` (default: its current version) what serving reads; returns the record."""
    version = int(table.version if version is None else version)
    tag = f"{TAG_PREFIX}{version}"
    tags = table.tags.list()
    if tag not in tags:
        table.tags.create(tag, version)
    faults.checkpoint("publish.tagged")
    record = {"table": table.name, "version": version, "tag": tag,
              "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
    atomic_write_text(workspace.home / POINTER, json.dumps(record, indent=1))
    for name in tags:
        if name.startswith(TAG_PREFIX) and name != tag:
            table.tags.delete(name)
    return record


def open_published(workspace: Workspace):
    """The published table, checked out (read-only) at its published version; None before the first publication."""
    record = published(workspace)
    if record is None:
        return None
    db = workspace.db
    if record["table"] not in store.table_names(db):
        raise DataError(f"{workspace.home / POINTER}: published table {record['table']!r} is missing from the database")
    table = db.open_table(record["table"])
    table.checkout(int(record["version"]))
    return table
