"""ANN recall on a real model's vectors: LanceDB's IVF_HNSW_SQ (what ``vector_index: auto`` builds) against IVF_PQ.

``benchmarks/ann_partitions.py`` measures the indexes on random clustered vectors, on which IVF_PQ's recall is poor;
real sentence embeddings have far less intrinsic dimension, and that decides how well product quantisation keeps the
neighbours. Here the vectors are MiniLM's (the default embedder, through ragtune's embedding cache) of real texts:
msmarco's passages and each of their sentences, and the chunking set's paragraphs and sentences (about 30,000).
200 texts are held out and embedded as queries; recall@10 is against exact search over the rest, latency the p50
of their searches (ten results each).

    python benchmarks/ann_recall.py        # BENCHMARKS.md, "A million chunks"
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, dataset_path, machine

sys.path.insert(0, str(REPO / "src"))


def texts() -> list[str]:
    from ragtune.text import split_sentences

    out = []
    for name in ("msmarco", "chunking"):
        for line in (dataset_path(name) / "corpus.jsonl").open():
            doc = json.loads(line)["text"]
            paragraphs = [p for p in doc.split("\n\n") if len(p.split()) >= 5]
            out += paragraphs + [s for p in paragraphs for s in split_sentences(p) if len(s.split()) >= 5]
    return list(dict.fromkeys(out))


def main() -> None:
    import lancedb
    import pyarrow as pa
    from lancedb.index import HnswSq, IvfPq

    from ragtune.config import RagConfig
    from ragtune.engine import Engine
    from ragtune.store import ANN_EF, ANN_REFINE
    from ragtune.workspace import Workspace

    corpus = texts()
    rng = np.random.default_rng(0)
    held = set(rng.choice(len(corpus), 200, replace=False).tolist())
    engine = Engine(RagConfig(), Workspace(Path(".ragtune")))
    base = [t for i, t in enumerate(corpus) if i not in held]
    t0 = time.perf_counter()
    vectors = engine.embedder.embed_documents(base).astype(np.float32)
    questions = engine.embedder.embed_queries([corpus[i] for i in sorted(held)]).astype(np.float32)
    print(f"{machine()}; {len(base)} vectors of {engine.config.embedding.model} ({time.perf_counter() - t0:.0f} s "
          f"to embed), {len(questions)} queries\n")
    exact = np.argsort(-(questions @ vectors.T), axis=1)[:, :10]
    dim = vectors.shape[1]
    rows = pa.table({"id": np.arange(len(base)), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), dim)})
    print("| index | search | recall@10 | p50 ms | build s |")
    print("|---|---|---|---|---|")
    for kind, config, searches in [
            ("IVF_HNSW_SQ (ragtune's)", HnswSq(distance_type="cosine"),
             [{"ef": ANN_EF, "refine_factor": ANN_REFINE}, {"ef": 200, "refine_factor": 1}]),
            ("IVF_PQ (LanceDB's defaults)", IvfPq(distance_type="cosine"),
             [{"nprobes": p, "refine_factor": r} for p in (20, 50) for r in (1, 5, 10)])]:
        table = lancedb.connect(tempfile.mkdtemp()).create_table("t", rows)
        t0 = time.perf_counter()
        table.create_index("vector", config=config)
        build = time.perf_counter() - t0
        for s in searches:
            found, times = [], []
            for q in questions:
                query = table.search(q).distance_type("cosine").limit(10)
                for key, value in s.items():
                    query = getattr(query, key)(value)
                t0 = time.perf_counter()
                ids = query.select(["id", "_distance"]).to_arrow()["id"].to_pylist()
                times.append((time.perf_counter() - t0) * 1000)
                found.append(ids)
            recall = np.mean([len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact)])
            setting = ", ".join(f"{k} {v}" for k, v in s.items())
            print(f"| {kind} | {setting} | {recall:.3f} | {statistics.median(times):.1f} | {build:.1f} |")


if __name__ == "__main__":
    main()
