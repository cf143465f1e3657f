"""ANN recall on a real model's vectors: LanceDB's IVF_HNSW_SQ (what ``vector_index: auto`` builds) against IVF_PQ.

``benchmarks/ann_partitions.py`` measures the indexes on random clustered vectors, on which IVF_PQ's recall is poor;
real sentence embeddings have far less intrinsic dimension, and that decides how well product quantisation keeps the
neighbours. Here the vectors are MiniLM's (the default embedder, through ragtune's embedding cache) of real texts:
msmarco's passages and each of their sentences, and the chunking set's paragraphs and sentences (about 30,000).
200 texts are held out and embedded as queries; recall@10 is against exact search over the rest, latency the p50
of their searches (ten results each).

    python benchmarks/ann_recall.py        # BENCHMARKS.md, "A million chunks"

``--documents N`` makes N documents the way ``million.py`` does (three real sentences each, numbered) instead, to
see how recall holds as a table of real vectors grows (issue #18: which index a million real vectors want):

    python benchmarks/ann_recall.py --documents 100000 --out DIR      # MiniLM through ragtune's cache, here

A million wants a GPU to embed them (this CPU makes about 90 such texts a second) and LanceDB beside it: on a GPU
machine with lancedb installed, ``--models`` embeds with MiniLM from the folder ``gpu.py --prepare`` writes (its
real weights, with msmarco and the chunking set the sentences come from). The GPU machine lent to this project has
no lancedb, and its wheel (75 MB) exceeds the 64 MiB that travel there, so it cannot run this.

    RAGTUNE_SHARED_DATASETS=.gpu PYTHONPATH=src python3 benchmarks/ann_recall.py --documents 1000000 \
        --models .gpu --out OUT
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


def exact_top(questions: np.ndarray, vectors: np.ndarray, k: int = 10, block: int = 262_144) -> np.ndarray:
    """Each question's ``k`` nearest vectors by inner product (unit vectors: cosine), best first."""
    best = np.full((len(questions), k), -np.inf, dtype=np.float32)
    ids = np.zeros((len(questions), k), dtype=np.int64)
    for start in range(0, len(vectors), block):
        scores = questions @ vectors[start : start + block].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        both = np.concatenate([best, np.take_along_axis(scores, top, 1)], 1)
        both_ids = np.concatenate([ids, top + start], 1)
        keep = np.argsort(-both, axis=1, kind="stable")[:, :k]
        best, ids = np.take_along_axis(both, keep, 1), np.take_along_axis(both_ids, keep, 1)
    return ids


def embedded(corpus: list[str], held: set[int], models: Path | None, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the texts kept as the base and of the held-out texts (as queries): MiniLM's, through
    ragtune's default embedder and cache here, or from ``models``/minilm on ``device``."""
    base = [t for i, t in enumerate(corpus) if i not in held]
    asked = [corpus[i] for i in sorted(held)]
    if models is None:
        from ragtune.config import RagConfig
        from ragtune.engine import Engine
        from ragtune.workspace import Workspace

        engine = Engine(RagConfig(), Workspace(Path(".ragtune")))
        vectors, questions = engine.embedder.embed_documents(base), engine.embedder.embed_queries(asked)
    else:
        from ragtune.embedding import SentenceTransformerEmbedder

        model = SentenceTransformerEmbedder(str(models / "minilm"), "minilm", device=device)
        vectors, questions = model.encode(base), model.encode_queries(asked)
    vectors, questions = vectors.astype(np.float32), questions.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    questions /= np.linalg.norm(questions, axis=1, keepdims=True)
    return vectors, questions


def main() -> None:
    import argparse

    import lancedb
    import pyarrow as pa
    from lancedb.index import HnswSq, IvfPq

    from ragtune.store import ANN_EF, ANN_REFINE, PQ_REFINE

    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=0, help="N documents as million.py makes them (0: real texts)")
    ap.add_argument("--models", type=Path, help="the folder gpu.py --prepare writes: MiniLM's weights there")
    ap.add_argument("--device", default="cuda", help="with --models")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, help="also write the rows as JSON into this folder")
    args = ap.parse_args()
    if args.documents:
        from million import documents, sentence_pool

        corpus = [d.text for d in documents(args.documents + args.queries, sentence_pool())]
    else:
        corpus = texts()
    rng = np.random.default_rng(0)
    held = set(rng.choice(len(corpus), args.queries, replace=False).tolist())
    t0 = time.perf_counter()
    vectors, questions = embedded(corpus, held, args.models, args.device)
    del corpus
    print(f"{machine()}; {len(vectors):,} vectors of MiniLM ({time.perf_counter() - t0:.0f} s to embed), "
          f"{len(questions)} queries\n", flush=True)
    exact = exact_top(questions, vectors)
    dim = vectors.shape[1]
    rows = pa.table({"id": np.arange(len(vectors)), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), dim)})
    del vectors
    results = []
    print("| index | search | recall@10 | p50 ms | p95 ms | build s |")
    print("|---|---|---|---|---|---|")
    for kind, config, searches in [
            ("IVF_HNSW_SQ (ragtune's)", HnswSq(distance_type="cosine"),
             [{"ef": ANN_EF, "refine_factor": ANN_REFINE}, {"ef": 200, "refine_factor": 1}]),
            ("IVF_PQ (LanceDB's defaults)", IvfPq(distance_type="cosine"),
             [{"refine_factor": PQ_REFINE}]
             + [{"nprobes": p, "refine_factor": r} for p in (20, 50) for r in (1, 5, 30)])]:
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
            recall = float(np.mean([len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact)]))
            setting = ", ".join(f"{k} {v}" for k, v in s.items())
            results.append({"index": kind, "search": s, "recall@10": recall, "p50_ms": statistics.median(times),
                            "p95_ms": float(np.percentile(times, 95)), "build_s": build, "rows": rows.num_rows})
            print(f"| {kind} | {setting} | {recall:.3f} | {statistics.median(times):.1f} | "
                  f"{np.percentile(times, 95):.1f} | {build:.1f} |", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ann_recall.json").write_text(json.dumps({"machine": machine(), "rows": results}, indent=2))


if __name__ == "__main__":
    main()
