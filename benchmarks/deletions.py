"""What deleted rows cost a vector search on LanceDB's IVF_HNSW_SQ index (LanceDB alone, no ragtune code): N random
clustered unit vectors (384 dimensions) indexed, then 1% of the rows deleted, 1% added, and ``optimize`` (the
incremental index update a sync runs); the latency of 100 searches (100 results, ef 500, refine 5) after each step.
With ``pylance`` installed, then the deleted rows dropped from the data files (Lance's compaction with
``materialize_deletions_threshold`` 0, which remaps the indexes): its time, the process's peak memory during it, and
the latency after.

    python benchmarks/deletions.py 300000    # BENCHMARKS.md, "A million chunks", the 1% sync
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import HnswSq

DIM = 384


def main(n: int) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)

    def vectors(m: int) -> np.ndarray:
        v = centres[rng.integers(0, 200, m)] + 0.5 * rng.standard_normal((m, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def rows(a: int, b: int) -> pa.Table:
        return pa.table({"id": [f"r{i}" for i in range(a, b)],
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors(b - a).reshape(-1)), DIM)})

    table = lancedb.connect(tempfile.mkdtemp()).create_table("t", rows(0, n))
    start = time.perf_counter()
    table.create_index("vector", config=HnswSq(distance_type="cosine"))
    print(f"{n:,} vectors, index built in {time.perf_counter() - start:.0f} s")
    questions = vectors(100)

    def latency(step: str) -> None:
        ms = []
        for q in questions:
            start = time.perf_counter()
            table.search(q).distance_type("cosine").limit(100).ef(500).refine_factor(5).select(["id"]).to_list()
            ms.append((time.perf_counter() - start) * 1000)
        print(f"{step}: p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms", flush=True)

    latency("built")
    table.delete("id IN (" + ",".join(f"'r{i}'" for i in range(0, n, 100)) + ")")
    latency("1% of the rows deleted")
    table.add(rows(n, n + n // 100))
    latency("1% added (not indexed)")
    table.optimize()
    latency("after optimize (the new rows indexed)")
    try:
        import psutil
        from lance import __version__ as lance_version
    except ImportError:
        return
    process, peak, done = psutil.Process(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    before = process.memory_info().rss
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    table.to_lance().optimize.compact_files(materialize_deletions_threshold=0.0)
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    table.checkout_latest()
    print(f"deleted rows compacted away (pylance {lance_version}): {seconds:.1f} s, RSS {before >> 20} MB before, "
          f"peak {peak[0] >> 20} MB during")
    latency("after the compaction")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)
