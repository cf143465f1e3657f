"""Read an offline W&B run file (``run-*.wandb``) back, independently of wandb's own (Go) reader.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of
records, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last), holding serialized
``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK = 32768


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, "not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += room
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The records of a run file once its exit record is on disk: ``run.finish()`` returns before wandb's service has
    flushed and closed the file (it closes the stream after ``inform_finish``), so a run finished in this process may
    still be short of its tail for a moment, longer on a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = list(records(path))
        except Exception:  # a record cut at the unflushed tail
            found = []
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def read_run(run_dir: Path) -> dict:
    """{'run': RunRecord, 'config': {...}, 'summary': {...}, 'history': {dotted key: last value}} of one offline run folder."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    out = {"config": {}, "summary": {}, "history": {}, "run": None, "artifacts": []}
    for rec in finished_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"].update({_key(u): json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            out["config"].update({_key(u): json.loads(u.value_json) for u in rec.config.update})
        elif kind == "summary":
            out["summary"].update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "history":
            for item in rec.history.item:
                out["history"][_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            out["artifacts"].append(rec.artifact.name)
    return out
