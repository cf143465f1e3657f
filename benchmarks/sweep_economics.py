"""Sweep economics: a 24-config sweep (3 chunkings x 2 embedders x {vector, hybrid} x {no rerank, rerank}) spends
on embedding about what its 6 distinct (chunking, embedder) pairs cost once; re-embedding per config would cost
4 times that. Also: the per-config overhead of the notebook path (papermill: kernel start, imports) against calling
the same function in process.

    python benchmarks/sweep_economics.py [--docs 1000] [--queries 20]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from _common import dataset_path, machine
from ragtune.cache import EmbeddingCache
from ragtune.chunking import chunk_documents
from ragtune.data import load_dataset
from ragtune.embedding import CachedEmbedder, make_embedder
from ragtune.experiments.sweep import SweepSpec, run_sweep


def write_subset(root: Path, docs: int, queries: int) -> Path:
    ds = load_dataset(dataset_path("msmarco"))
    judged = [q for q in ds.queries if q.id in ds.qrels][:queries]
    keep = {d for q in judged for d in ds.qrels[q.id]}
    others = sorted(d.id for d in ds.documents if d.id not in keep)
    keep |= set(random.Random(0).sample(others, max(0, docs - len(keep))))
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for d in ds.documents:
            if d.id in keep:
                f.write(json.dumps({"_id": d.id, "text": d.text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for q in judged:
            f.write(json.dumps({"_id": q.id, "text": q.text}) + "\n")
    with open(root / "qrels" / "test.tsv", "w") as f:
        for q in judged:
            for d, g in ds.qrels[q.id].items():
                f.write(f"{q.id}\t{d}\t{g}\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_subset(tmp / "data", args.docs, args.queries)
        spec = SweepSpec.model_validate({
            "name": "economics", "dataset": str(data),
            "grid": {"chunking.size": [64, 128, 256], "embedding.model": ["minilm", "bge-small"],
                     "retrieval.mode": ["vector", "hybrid"], "rerank.model": [None, "cross-encoder"]},
            "base": {"chunking": {"overlap": 0}, "rerank": {"depth": 10}},
            "tracking": {"mode": "disabled"},
        })
        configs = spec.expand()
        print(f"# {machine()}; msmarco subset: {args.docs} passages, {args.queries} queries; {len(configs)} configs")

        # the ceiling: each distinct (chunking, embedder) pair embedded once, with a cold cache
        corpus = load_dataset(data).corpus
        pair_seconds = {}
        for cfg in configs:
            pair = (cfg.chunking.size, cfg.embedding.model)
            if pair in pair_seconds:
                continue
            emb = CachedEmbedder(make_embedder(cfg.embedding), EmbeddingCache(tmp / f"pair-{len(pair_seconds)}.sqlite"))
            chunks = chunk_documents(corpus.documents, cfg.chunking)
            emb.embed_documents([c.text for c in chunks])
            pair_seconds[pair] = emb.stats.seconds
        once = sum(pair_seconds.values())
        per_config = sum(pair_seconds[(c.chunking.size, c.embedding.model)] for c in configs)
        print(f"{len(pair_seconds)} distinct pairs embedded once: {once:.1f} s; "
              f"re-embedding per config would cost {per_config:.1f} s")

        start = time.perf_counter()
        report = run_sweep(spec, tmp / "sweep", runner="inprocess", home=tmp / "home", progress=False)
        wall = time.perf_counter() - start
        spent = 0.0
        for cdir in (tmp / "sweep" / "configs").iterdir():
            spent += json.loads((cdir / "result" / "metrics.json").read_text())["embedding"]["seconds"]
        print(f"sweep ({report.count('done')} done, {report.count('failed')} failed) in {wall:.1f} s; "
              f"embedding time inside it {spent:.1f} s = {spent / once:.2f}x the distinct pairs "
              f"(queries included), {per_config / spent:.1f}x less than re-embedding per config")

        # per-config overhead of the notebook path, warm caches on both sides
        few = SweepSpec.model_validate({**spec.model_dump(mode="json"),
                                        "grid": {"retrieval.mode": ["vector", "hybrid", "fts"], "retrieval.top_k": [5, 10]}})
        timings = {}
        for runner in ("inprocess", "papermill"):
            t0 = time.perf_counter()
            rep = run_sweep(few, tmp / f"overhead-{runner}", runner=runner, home=tmp / "home", progress=False)
            timings[runner] = (time.perf_counter() - t0) / rep.count("done")
        print(f"per config, warm cache: in process {timings['inprocess']:.2f} s, through papermill "
              f"{timings['papermill']:.2f} s: notebook overhead {timings['papermill'] - timings['inprocess']:.2f} s")


if __name__ == "__main__":
    main()
