"""Retrieval quality on the shared benchmark subsets.

msmarco (TREC DL 2019 judgments): nDCG@10 and recall@100 for BM25, each embedder, hybrid RRF, hybrid linear, and
hybrid + cross-encoder. chunking (answer spans): span recall, precision and IoU at 5 chunks for several chunkings.

    python benchmarks/quality.py [--skip-rerank]
    python benchmarks/quality.py --chunking-only    # the chunking table alone (BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import dataset_path, machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate
from ragtune.stats import paired_test
from ragtune.workspace import Workspace

MSMARCO = {
    "BM25": {"retrieval": {"mode": "fts"}},
    "vector minilm": {"retrieval": {"mode": "vector"}},
    "vector bge-small": {"embedding": {"model": "bge-small"}, "retrieval": {"mode": "vector"}},
    "hybrid RRF (minilm)": {"retrieval": {"mode": "hybrid", "fusion": "rrf"}},
    "hybrid linear 0.7 (minilm)": {"retrieval": {"mode": "hybrid", "fusion": "linear", "weight": 0.7}},
    "hybrid RRF + cross-encoder@50": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "cross-encoder", "depth": 50}},
}
CHUNKING = {
    "sentence 128/16": {"strategy": "sentence", "size": 128, "overlap": 16},
    "sentence 256/32": {"strategy": "sentence", "size": 256, "overlap": 32},
    "token 256/32": {"strategy": "token", "size": 256, "overlap": 32},
    "sentence 512/64": {"strategy": "sentence", "size": 512, "overlap": 64},
    "semantic (p95, max 512)": {"strategy": "semantic", "size": 512, "overlap": 0},
    "sentence 128/16, minilm tokens": {"strategy": "sentence", "size": 128, "overlap": 16, "tokenizer": "embedder"},
    "sentence 254/32, minilm tokens": {"strategy": "sentence", "size": 254, "overlap": 32, "tokenizer": "embedder"},
}


def msmarco(ws: Workspace, skip_rerank: bool) -> None:
    ds = load_dataset(dataset_path("msmarco"))
    print(f"\nmsmarco: {len(ds.documents)} passages, {sum(1 for q in ds.queries if q.id in ds.qrels)} judged queries")
    print("| config | nDCG@10 | recall@100 | MRR@10 | p50 ms | seconds |\n|---|---|---|---|---|---|")
    for name, overrides in MSMARCO.items():
        if skip_rerank and "rerank" in overrides:
            continue
        t0 = time.perf_counter()
        cfg = RagConfig.from_dict({"chunking": {"size": 512, "overlap": 0}, **overrides})
        s = evaluate(cfg, ds, ws).summary
        print(f"| {name} | {s['ndcg@10']:.4f} | {s['recall@100']:.4f} | {s['mrr@10']:.4f} | "
              f"{s['latency_p50_ms']:.1f} | {time.perf_counter() - t0:.0f} |", flush=True)


def chunking(ws: Workspace) -> None:
    ds = load_dataset(dataset_path("chunking"))
    print(f"\nchunking: {len(ds.documents)} documents, {len(ds.queries)} queries, vector search (minilm), 5 chunks")
    print("| chunking | chunks | cut at minilm's 254 tokens | span recall@5 | span precision@5 | span IoU@5 | "
          "chunk nDCG@10 |\n|---|---|---|---|---|---|---|")
    per_query = {}
    for name, settings in CHUNKING.items():
        cfg = RagConfig.from_dict({"chunking": settings, "retrieval": {"mode": "vector"}})
        res = evaluate(cfg, ds, ws)
        s, per_query[name] = res.summary, res.per_query
        print(f"| {name} | {res.index.chunks} | {res.index.truncated} | {s['span_recall@5']:.4f} | "
              f"{s['span_precision@5']:.4f} | {s['span_iou@5']:.4f} | {s['chunk_ndcg@10']:.4f} |", flush=True)
    a, b = per_query["sentence 256/32"], per_query["sentence 254/32, minilm tokens"]
    for metric in ("span_recall@5", "chunk_ndcg@10"):
        both = pd.concat({"a": a[metric], "b": b[metric]}, axis=1).dropna()
        p = paired_test(both["a"], both["b"])
        print(f"sentence 254/32 in minilm tokens vs 256/32 in cl100k, {metric}: "
              f"{both['b'].mean() - both['a'].mean():+.4f} over {len(both)} queries, paired randomization p = {p:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-rerank", action="store_true")
    ap.add_argument("--chunking-only", action="store_true", help="only the chunking dataset's table")
    args = ap.parse_args()
    print(f"# {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        if not args.chunking_only:
            msmarco(ws, args.skip_rerank)
        chunking(ws)


if __name__ == "__main__":
    main()
