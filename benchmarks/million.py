"""A corpus of N chunks through ragtune's production path on this machine: a corpus.jsonl streamed into the table
by the ingest (``ingest.sync``: chunking + scan + embedding into the cache, then the write), the full-text and ANN
indexes; peak memory, the table and cache on disk, search latency p50/p95 (vector through the ANN index and exact,
full text, hybrid) with the ANN index's recall@10 against exact search; then a 1% incremental sync (every 100th
document edited) and the indexes brought up to date, and the latencies again, at each size.

Texts are real: sentences of the shared msmarco and chunking corpora and of the shipped sample, three per document,
drawn with a seeded generator and numbered, so every document is distinct and is one chunk (sentence chunks of 256
tokens). The documents are written to a corpus.jsonl first. Vectors come from the ``hashing`` embedder (word
unigrams hashed into 384 dimensions: no model, so that the table path is measured and not a model; its vectors are
sparser than a neural model's, which flatters neither ANN index).

    python benchmarks/million.py 100000 300000 1000000    # results in BENCHMARKS.md, "A million chunks"
    python benchmarks/million.py 1000000 --vector-dtype float16   # the table's vectors stored as float16
    python benchmarks/million.py 100000 1000000 --vector-index ivf_pq   # IVF_PQ (re-scored ten-fold) instead of auto

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
from ragtune.data import load_corpus, load_dataset, sample_dataset_path
from ragtune.engine import Engine
from ragtune.ingest import sync
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


def phase_peak_mb() -> float:
    """The process's peak RSS since the last call (Linux: VmHWM, reset through clear_refs); 0 elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 0.0
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


#: search settings tried on the ANN index (limit 10): (nprobes, ef, refine_factor); None: LanceDB's default
SETTINGS = [(None, None, None), (None, 100, None), (None, 100, 5), (None, 200, 5), (None, 500, 5)]
#: ... on an IVF_PQ index (no graph: ef means nothing there); ragtune searches it with refine 10
PQ_SETTINGS = [(None, None, None), (None, None, 10), (50, None, 10), (100, None, 10), (50, None, 30)]


def ann_trials(table, vectors, exact_ids, settings=SETTINGS) -> list[dict]:
    out = []
    for nprobes, ef, refine in settings:
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


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


def latencies(table, engine, config, queries, vectors) -> dict:
    """Per query: the vector search through the ANN index (ragtune's settings) and exact, full text, hybrid; and the
    index's recall@10 against exact search."""
    vector = Retriever(config, table, engine.embedder)
    fts = Retriever(RagConfig.from_dict({**CONFIG, "retrieval": {"mode": "fts"}}), table, engine.embedder)
    hybrid = Retriever(RagConfig.from_dict({**CONFIG, "retrieval": {"mode": "hybrid"}}), table, engine.embedder)
    ms: dict[str, list[float]] = {"vector": [], "exact": [], "fts": [], "hybrid": []}
    recall, exact_ids = [], []
    for q, v in zip(queries, vectors):
        t = time.perf_counter()
        got = [h.chunk_id for h in vector._vector(v, 10)]
        ms["vector"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        exact = table.search(v).distance_type("cosine").bypass_vector_index().limit(10).select(["id"]).to_list()
        ms["exact"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        fts.search(q, 10)
        ms["fts"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        hybrid.search(q, 10, v)
        ms["hybrid"].append((time.perf_counter() - t) * 1000)
        recall.append(len(set(got) & {r["id"] for r in exact}) / 10)
        exact_ids.append({r["id"] for r in exact})
    return {"ms": {k: percentiles(v) for k, v in ms.items()}, "recall@10": float(np.mean(recall)),
            "exact_ids": exact_ids}


def write_corpus(path: Path, n: int, pool: list[str], revised_every: int = 0) -> int:
    """The corpus as a corpus.jsonl file; ``revised_every``: every such document's text changed (a sync's edits)."""
    changed = 0
    with path.open("w", encoding="utf-8") as out:
        for i, doc in enumerate(documents(n, pool)):
            text = doc.text
            if revised_every and i % revised_every == 0:
                text, changed = text + " (revised)", changed + 1
            out.write(json.dumps({"_id": doc.id, "text": text}) + "\n")
    return changed


def one(n: int, vector_dtype: str | None, vector_index: str) -> dict:
    from ragtune.workspace import Workspace

    pool = sentence_pool()
    config = RagConfig.from_dict({**CONFIG, "retrieval": {**CONFIG["retrieval"], "vector_dtype": vector_dtype,
                                                          "vector_index": vector_index}})
    queries = [q.text for q in load_dataset(dataset_path("msmarco")).queries][:100]
    with tempfile.TemporaryDirectory() as home:
        corpus = Path(home) / "corpus.jsonl"
        write_corpus(corpus, n, pool)
        base_mb = peak_mb()
        phase_peak_mb()
        phases = {}
        ws = Workspace(Path(home))
        engine = Engine(config, ws)
        t0 = time.perf_counter()  # the production ingest: the file streamed, every chunk cached, then written
        table, _ = sync(config, load_corpus(corpus, stream=True), ws.db, "million", engine.embedder, index=False)
        write_s = time.perf_counter() - t0
        write_mb = peak_mb()
        phases["ingest"] = phase_peak_mb()
        t0 = time.perf_counter()
        store.index_table(table, config.retrieval.model_copy(update={"vector_index": "flat"}))
        fts_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.build_ann(table, config.retrieval.vector_index, table.count_rows())
        ann_s = time.perf_counter() - t0
        phases["indexes"] = phase_peak_mb()
        vectors = engine.embedder.embed_queries(queries)
        first = latencies(table, engine, config, queries, vectors)
        stats = table.index_stats(next(i.name for i in table.list_indices() if i.index_type != "FTS")) \
            if ann_s > 0.5 else None
        exact_ids = first.pop("exact_ids")
        pq = config.retrieval.vector_index == "ivf_pq"
        trials = ann_trials(table, vectors, exact_ids, PQ_SETTINGS if pq else SETTINGS) if stats is not None else []
        phases["searches"] = phase_peak_mb()
        table_mb = size_mb(Path(home) / "lancedb")
        # a 1% incremental sync: every 100th document edited, then the indexes brought up to date
        changed = write_corpus(corpus, n, pool, revised_every=100)
        t0 = time.perf_counter()
        table, fresh = sync(config, load_corpus(corpus, stream=True), ws.db, "million", engine.embedder, index=False)
        sync_s = time.perf_counter() - t0
        phases["sync"] = phase_peak_mb()
        t0 = time.perf_counter()
        store.reindex(table, config.retrieval)
        reindex_s = time.perf_counter() - t0
        phases["index update"] = phase_peak_mb()
        assert fresh.changed and len(fresh.changed) == changed and not fresh.added and not fresh.removed
        after = latencies(table, engine, config, queries, vectors)
        after.pop("exact_ids")
        return {
            "chunks": table.count_rows(), "write_s": write_s, "fts_s": fts_s, "ann_s": ann_s,
            "ann": [i.index_type for i in table.list_indices() if i.index_type != "FTS"],
            "peak_mb_start": base_mb, "peak_mb_write": write_mb, "peak_mb": peak_mb(), "phase_peaks_mb": phases,
            "table_mb": table_mb, "cache_mb": size_mb(Path(home) / "embeddings.sqlite"),
            "first": first, "partitions": getattr(stats, "num_indices", None) and str(stats), "trials": trials,
            "sync": {"changed": len(fresh.changed), "chunks": fresh.chunks_embedded, "sync_s": sync_s,
                     "reindex_s": reindex_s, **after},
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--one", action="store_true", help="run one size in this process (used by the driver)")
    parser.add_argument("--vector-dtype", choices=["float16"], help="retrieval.vector_dtype (default: float32)")
    parser.add_argument("--vector-index", default="auto", choices=["auto", "ivf_pq"], help="retrieval.vector_index")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.sizes[0], args.vector_dtype, args.vector_index)))
        return
    print(machine(), f"vectors stored as {args.vector_dtype or 'float32'}, vector_index {args.vector_index}")
    for n in args.sizes:
        dtype = ["--vector-dtype", args.vector_dtype] if args.vector_dtype else []
        out = subprocess.run([sys.executable, __file__, str(n), "--one", *dtype, "--vector-index", args.vector_index],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{n} chunks failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        f, y = r["first"], r["sync"]
        print(f"{r['chunks']:>9,} chunks: ingest {r['write_s']:.0f} s ({r['chunks'] / r['write_s']:,.0f} chunks/s), "
              f"full-text index {r['fts_s']:.0f} s, ANN {r['ann'] or 'none'} {r['ann_s']:.0f} s; peak RSS "
              f"{r['peak_mb']:.0f} MB (after imports and the sentence pool {r['peak_mb_start']:.0f}, after the ingest "
              f"{r['peak_mb_write']:.0f}); table {r['table_mb']:.0f} MB, cache {r['cache_mb']:.0f} MB", flush=True)
        print("    peak RSS by phase: " + ", ".join(f"{k} {v:.0f} MB" for k, v in r["phase_peaks_mb"].items()),
              flush=True)
        for name, d in (("built", f), ("after the 1% sync", y)):
            print(f"    {name}: " + ", ".join(f"{k} p50 {v['p50']:.1f} / p95 {v['p95']:.1f} ms" for k, v in
                                             d["ms"].items()) + f"; ANN recall@10 {d['recall@10']:.3f}", flush=True)
        print(f"    1% sync: {y['changed']:,} documents changed, {y['chunks']:,} chunks embedded, sync {y['sync_s']:.1f} s,"
              f" index update {y['reindex_s']:.1f} s", flush=True)
        for t in r["trials"]:
            print(f"    nprobes {t['nprobes']}, ef {t['ef']}, refine {t['refine']}: recall@10 {t['recall@10']:.3f}, "
                  f"p50 {t['p50_ms']:.1f} ms", flush=True)
        if r["partitions"]:
            print(f"    index: {r['partitions']}", flush=True)


if __name__ == "__main__":
    main()
