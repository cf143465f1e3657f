"""IVF partitions of LanceDB's IVF_HNSW_SQ index against the cost of deleted rows (LanceDB alone, no ragtune code):
N random clustered unit vectors (384 dimensions), the index built with P partitions (0: LanceDB's choice), the
ANN index's recall@10 against exact search and the latency of 100 ten-result searches (ef 500, refine 5; with P > 1
also probing every partition), then 1% of the rows deleted, then (with ``pylance`` installed) the deleted rows
compacted away. Build and compaction report seconds, the process's memory before and its peak during.

    for P in 0 4 16; do python benchmarks/ann_partitions.py 300000 $P; done   # BENCHMARKS.md, "A million chunks"
    python benchmarks/ann_partitions.py 300000 0 ivf-pq     # the same with an IVF_PQ index (no graph to remap)
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import threading
import time

import lancedb
import numpy as np
import psutil
import pyarrow as pa
from lancedb.index import HnswSq, IvfPq

DIM = 384


def main(n: int, partitions: int, kind: str = "hnsw") -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)

    def vectors(m: int) -> np.ndarray:
        v = centres[rng.integers(0, 200, m)] + 0.5 * rng.standard_normal((m, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    rows = pa.table({"id": [f"r{i}" for i in range(n)],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors(n).reshape(-1)), DIM)})
    table = lancedb.connect(tempfile.mkdtemp()).create_table("t", rows)
    questions = vectors(100)
    process = psutil.Process()

    def peak_of(fn) -> tuple[float, int, int]:
        peak, done = [process.memory_info().rss], threading.Event()
        before = peak[0]

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        return round(seconds, 1), before >> 20, peak[0] >> 20

    exact = [{r["id"] for r in table.search(q).distance_type("cosine").limit(10).bypass_vector_index()
              .select(["id"]).to_list()} for q in questions]
    make = HnswSq if kind == "hnsw" else IvfPq
    config = make(distance_type="cosine", **({"num_partitions": partitions} if partitions else {}))
    out = {"rows": n, "index": kind, "partitions": partitions, "build s, MB before, MB peak": peak_of(
        lambda: table.create_index("vector", config=config))}

    def searches(nprobes: int | None = None) -> dict:
        for _ in range(2):  # the second pass is timed
            ms, recall = [], []
            for q, want in zip(questions, exact):
                start = time.perf_counter()
                query = table.search(q).distance_type("cosine").limit(10).ef(500).refine_factor(5)
                got = (query.nprobes(nprobes) if nprobes else query).select(["id", "_distance"]).to_list()
                ms.append((time.perf_counter() - start) * 1000)
                recall.append(len(want & {r["id"] for r in got}) / 10)
        return {"recall@10": round(float(np.mean(recall)), 3), "p50 ms": round(float(np.percentile(ms, 50)), 1),
                "p95 ms": round(float(np.percentile(ms, 95)), 1)}

    probes = partitions if partitions > 1 else None
    out["built"] = searches()
    if probes:
        out["built, every partition probed"] = searches(probes)
    table.delete("id IN (" + ",".join(f"'r{i}'" for i in range(0, n, 100)) + ")")
    out["1% deleted"] = searches(probes)
    if importlib.util.find_spec("lance") is None:  # pylance: the compaction options
        print(json.dumps(out))
        return
    out["compaction s, MB before, MB peak"] = peak_of(
        lambda: table.to_lance().optimize.compact_files(materialize_deletions_threshold=0.0))
    table.checkout_latest()
    out["compacted"] = searches(probes)
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0, sys.argv[3] if len(sys.argv) > 3 else "hnsw")
