"""A corpus of N chunks written through ragtune's table path (``engine.encode_chunks`` -> ``store.write_chunks`` ->
``store.index_table``, what ``ragtune index`` runs) on this machine: build time (chunking + scan + embedding + write,
the full-text index, the ANN index), peak memory, the table and cache on disk, and search latency with the ANN
index's recall@10 against exact search, at each size.

Texts are real: sentences of the shared msmarco and chunking corpora and of the shipped sample, three per document,
drawn with a seeded generator and numbered, so every document is distinct and is one chunk (sentence chunks of 256
tokens). Documents are generated as the write consumes them. Vectors come from the ``hashing`` embedder (word
unigrams hashed into 384 dimensions: no model, so that the table path is measured and not a model; its vectors are
sparser than a neural model's, which flatters neither ANN index).

    python benchmarks/million.py 100000 300000 1000000    # results in BENCHMARKS.md, "A million chunks"

Each size runs in a process of its own, so that its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import dataset_path, machine

from ragtune import store
from ragtune.config import RagConfig
from ragtune.data import load_dataset, sample_dataset_path
from ragtune.engine import Engine, encode_chunks
from ragtune.retrieval import Retriever
from ragtune.types import Document

CONFIG = {"chunking": {"strategy": "sentence", "size": 256, "overlap": 32}, "embedding": {"model": "hashing"},
          "retrieval": {"mode": "vector", "vector_index": "auto"}}


def sentence_pool() -> list[str]:
    texts = [d.text for name in ("msmarco", "chunking") for d in load_dataset(dataset_path(name)).corpus.documents]
    texts += [d.text for d in load_dataset(sample_dataset_path()).corpus.documents]
    pool = {s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if 20 <= len(s.strip()) <= 300}
    return sorted(pool)


def documents(n: int, pool: list[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    for start in range(0, n, 10000):
        picks = rng.integers(0, len(pool), size=(min(10000, n - start), 3))
        for i, (a, b, c) in enumerate(picks, start):
            yield Document(f"doc{i}", f"{pool[a]} {pool[b]} {pool[c]} (record {i})")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


#: search settings tried on the ANN index (limit 10): (nprobes, ef, refine_factor); None: LanceDB's default
SETTINGS = [(None, None, None), (None, 100, None), (None, 100, 5), (None, 200, 5), (None, 500, 5)]


def ann_trials(table, vectors, exact_ids) -> list[dict]:
    out = []
    for nprobes, ef, refine in SETTINGS:
        times, recall = [], []
        for v, want in zip(vectors, exact_ids):
            q = table.search(v).distance_type("cosine").limit(10).select(["id"])
            q = q.nprobes(nprobes) if nprobes else q
            q = q.ef(ef) if ef else q
            q = q.refine_factor(refine) if refine else q
            t = time.perf_counter()
            got = {r["id"] for r in q.to_list()}
            times.append((time.perf_counter() - t) * 1000)
            recall.append(len(got & want) / 10)
        out.append({"nprobes": nprobes, "ef": ef, "refine": refine, "p50_ms": float(np.median(times)),
                    "recall@10": float(np.mean(recall))})
    return out


def one(n: int) -> dict:
    from ragtune.workspace import Workspace

    pool = sentence_pool()
    base_mb = peak_mb()
    config = RagConfig.from_dict(CONFIG)
    queries = [q.text for q in load_dataset(dataset_path("msmarco")).queries][:100]
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace(Path(home))
        engine = Engine(config, ws)
        t0 = time.perf_counter()
        table = store.write_chunks(ws.db, "million", encode_chunks(documents(n, pool), config, engine.embedder))
        write_s = time.perf_counter() - t0
        write_mb = peak_mb()
        t0 = time.perf_counter()
        store.index_table(table, config.retrieval.model_copy(update={"vector_index": "flat"}))
        fts_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.build_ann(table, config.retrieval.vector_index, table.count_rows())
        ann_s = time.perf_counter() - t0
        vectors = engine.embedder.embed_queries(queries)
        retriever = Retriever(config, table, engine.embedder)
        hybrid = Retriever(RagConfig.from_dict({**CONFIG, "retrieval": {"mode": "hybrid"}}), table, engine.embedder)
        ann_ms, exact_ms, hybrid_ms, recall, exact_ids = [], [], [], [], []
        for q, v in zip(queries, vectors):
            t = time.perf_counter()
            got = [h.chunk_id for h in retriever._vector(v, 10)]
            ann_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            exact = table.search(v).distance_type("cosine").bypass_vector_index().limit(10).select(["id"]).to_list()
            exact_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            hybrid.search(q, 10, v)
            hybrid_ms.append((time.perf_counter() - t) * 1000)
            recall.append(len(set(got) & {r["id"] for r in exact}) / 10)
            exact_ids.append({r["id"] for r in exact})
        stats = table.index_stats(next(i.name for i in table.list_indices() if i.index_type != "FTS")) \
            if ann_s > 0.5 else None
        return {
            "chunks": table.count_rows(), "write_s": write_s, "fts_s": fts_s, "ann_s": ann_s,
            "ann": [i.index_type for i in table.list_indices() if i.index_type != "FTS"],
            "peak_mb_start": base_mb, "peak_mb_write": write_mb, "peak_mb": peak_mb(),
            "table_mb": size_mb(Path(home) / "lancedb"), "cache_mb": size_mb(Path(home) / "embeddings.sqlite"),
            "ann_p50_ms": float(np.median(ann_ms)), "exact_p50_ms": float(np.median(exact_ms)),
            "hybrid_p50_ms": float(np.median(hybrid_ms)), "recall@10": float(np.mean(recall)),
            "partitions": getattr(stats, "num_indices", None) and str(stats),
            "trials": ann_trials(table, vectors, exact_ids) if stats is not None else [],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--one", action="store_true", help="run one size in this process (used by the driver)")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.sizes[0])))
        return
    print(machine())
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, str(n), "--one"], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{n} chunks failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['chunks']:>9,} chunks: write {r['write_s']:.0f} s ({r['chunks'] / r['write_s']:,.0f} chunks/s), "
              f"full-text index {r['fts_s']:.0f} s, ANN {r['ann'] or 'none'} {r['ann_s']:.0f} s; peak RSS "
              f"{r['peak_mb']:.0f} MB (after imports and the sentence pool {r['peak_mb_start']:.0f}, after the write "
              f"{r['peak_mb_write']:.0f}); table {r['table_mb']:.0f} MB, cache {r['cache_mb']:.0f} MB; query p50: "
              f"vector {r['ann_p50_ms']:.1f} ms (exact {r['exact_p50_ms']:.1f} ms, recall@10 of the index "
              f"{r['recall@10']:.3f}), hybrid {r['hybrid_p50_ms']:.1f} ms", flush=True)
        for t in r["trials"]:
            print(f"    nprobes {t['nprobes']}, ef {t['ef']}, refine {t['refine']}: recall@10 {t['recall@10']:.3f}, "
                  f"p50 {t['p50_ms']:.1f} ms", flush=True)
        if r["partitions"]:
            print(f"    index: {r['partitions']}", flush=True)


if __name__ == "__main__":
    main()
