"""What a sync's comparison of the corpus with the table costs at N documents (one chunk each, 1% edited): peak memory
above the start (Linux VmHWM) and seconds, for ``ingest._compare`` on the table's columns as ``ingest._held`` reads
them (an Arrow table standing in for LanceDB's scan, so that only the bookkeeping is measured).

    python benchmarks/sync_memory.py 1000000     # BENCHMARKS.md, "A million chunks"
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from pathlib import Path

import pyarrow as pa

from _common import REPO, machine

sys.path.insert(0, str(REPO / "src"))


def memory_mb(field: str, reset: bool = False) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) in MB; ``reset``: start a new peak from here."""
    status = Path("/proc/self/status").read_text()
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def main(n: int) -> None:
    from ragtune.ingest import Freshness, _compare

    def digest(i: int, edited: bool) -> bytes:
        return hashlib.sha256(f"document {i}{' (revised)' if edited else ''}".encode()).digest()

    digests = {f"doc{i}": digest(i, i % 100 == 0) for i in range(n)}
    held = pa.table({"doc_id": [f"doc{i}" for i in range(n)],
                     "doc_hash": [digest(i, False).hex()[:16] for i in range(n)],
                     "ingested_at": ["2026-12-06T10:00:00+00:00"] * n})
    memory_mb("VmHWM", reset=True)
    start = memory_mb("VmRSS")
    t0 = time.perf_counter()
    fresh = Freshness()
    _compare(fresh, digests, held)
    seconds = time.perf_counter() - t0
    assert len(fresh.changed) == (n + 99) // 100 and not fresh.added and not fresh.removed
    peak = memory_mb("VmHWM") - start
    print(f"{machine()}; {n:,} documents, {len(fresh.changed):,} edited: peak {peak:.0f} MB above the start, "
          f"{seconds:.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
