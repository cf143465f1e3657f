"""Query latency per retrieval mode at 5,000 and 50,000 chunks (no re-ranking), query embedding reported apart.

The 5,000-chunk table is msmarco (one passage per chunk). The 50,000-chunk table repeats it ten times, each copy's
vectors perturbed slightly (and renormalised) so that vector search sees distinct points, and its texts unchanged so
that BM25 posting lists grow as they would in a corpus ten times larger. At 50,000 chunks `vector_index: auto`
builds an IVF_HNSW_SQ index; its recall@10 against exact search is reported.

    python benchmarks/query_latency.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import dataset_path, machine
from ragtune import store
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.engine import Engine
from ragtune.workspace import Workspace
from ragtune.types import Chunk

MODES = {
    "vector": {"retrieval": {"mode": "vector"}},
    "fts": {"retrieval": {"mode": "fts"}},
    "hybrid-rrf": {"retrieval": {"mode": "hybrid", "fusion": "rrf"}},
    "hybrid-linear": {"retrieval": {"mode": "hybrid", "fusion": "linear"}},
}


def pct(values, q):
    return float(np.percentile(values, q))


def measure(base: RagConfig, ws: Workspace, table, queries, vectors, repeat: int, k: int = 10) -> dict:
    out = {}
    for mode, overrides in MODES.items():
        cfg = RagConfig.from_dict({**base.model_dump(mode="json"), **overrides})
        retriever = Engine(cfg, ws).retriever(table)
        for q, v in zip(queries[:3], vectors[:3]):  # warm up
            retriever.search(q, k, v)
        times = []
        for _ in range(repeat):
            for q, v in zip(queries, vectors):
                t0 = time.perf_counter()
                retriever.search(q, k, v)
                times.append((time.perf_counter() - t0) * 1000)
        out[mode] = (pct(times, 50), pct(times, 95))
    return out


def replicate(table, copies: int, seed: int = 0):
    data = table.to_arrow()
    vecs = np.stack(data["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    rng = np.random.default_rng(seed)
    chunks, blocks = [], []
    ids, docs, texts = data["id"].to_pylist(), data["doc_id"].to_pylist(), data["text"].to_pylist()
    starts, ends = data["start"].to_pylist(), data["end"].to_pylist()
    for c in range(copies):
        noisy = vecs + (rng.normal(scale=0.02, size=vecs.shape).astype(np.float32) if c else 0)
        blocks.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
        chunks.extend(Chunk(f"{i}~{c}", f"{d}~{c}", t, s, e) for i, d, t, s, e in zip(ids, docs, texts, starts, ends))
    return chunks, np.concatenate(blocks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ds = load_dataset(dataset_path("msmarco"))
    base = RagConfig.from_dict({"chunking": {"size": 512, "overlap": 0}})
    queries = [q.text for q in ds.queries]
    print(f"# {machine()}; {len(queries)} msmarco queries x {args.repeat}, top 10 of 100 candidates")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        engine = Engine(base, ws)
        table, info = engine.index(ds.corpus)
        embedder = engine.embedder.embedder
        embedder.encode(queries[:2])
        single = []
        for q in queries:
            t0 = time.perf_counter()
            embedder.encode([q])
            single.append((time.perf_counter() - t0) * 1000)
        print(f"query embedding (minilm, one query per call, CPU): p50 {pct(single, 50):.1f} ms, p95 {pct(single, 95):.1f} ms")
        vectors = engine.embedder.embed_queries(queries)
        results = {info.chunks: measure(base, ws, table, queries, vectors, args.repeat)}
        chunks, vecs = replicate(table, 10)
        big = store.build_index(ws.db, "bench-50k", [(chunks, None, vecs)], base.retrieval.model_copy(update={"vector_index": "auto"}))
        flat = store.build_index(ws.db, "bench-50k-flat", [(chunks, None, vecs)],
                                   base.retrieval.model_copy(update={"vector_index": "flat"}))
        results[big.count_rows()] = measure(base, ws, big, queries, vectors, args.repeat)
        # ANN recall@10 against exact search on the same vectors
        r_ann = Engine(RagConfig.from_dict({"retrieval": {"mode": "vector"}}), ws).retriever(big)
        r_flat = Engine(RagConfig.from_dict({"retrieval": {"mode": "vector"}}), ws).retriever(flat)
        recall = np.mean([
            len({h.chunk_id for h in r_ann.search(q, 10, v).chunks(10)} & {h.chunk_id for h in r_flat.search(q, 10, v).chunks(10)}) / 10
            for q, v in zip(queries, vectors)
        ])
        print(f"IVF_HNSW_SQ recall@10 against exact search at {big.count_rows()} chunks: {recall:.3f}")
    print("\n| chunks | mode | p50 ms | p95 ms |\n|---|---|---|---|")
    for n, modes in results.items():
        for mode, (p50, p95) in modes.items():
            print(f"| {n:,} | {mode} | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
