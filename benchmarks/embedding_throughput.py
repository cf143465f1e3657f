"""Embedding throughput through ragtune's path (cache lookups and writes included, cold cache) against the raw model
on the same texts and batch size.

    python benchmarks/embedding_throughput.py [--texts 1000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import dataset_path, machine
from ragtune.cache import EmbeddingCache
from ragtune.config import EmbeddingConfig
from ragtune.embedding import CachedEmbedder, make_embedder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    with open(dataset_path("msmarco") / "corpus.jsonl") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(args.texts), f)]
    print(f"# {machine()}; {len(texts)} msmarco passages, batch size {args.batch_size}")

    # minilm: sentence-transformers encode is the raw model
    embedder = make_embedder(EmbeddingConfig(model="minilm", device="cpu", batch_size=args.batch_size))
    model = embedder.model
    model.encode(texts[:64], batch_size=args.batch_size)  # warm up
    t0 = time.perf_counter()
    raw = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    raw_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedEmbedder(embedder, EmbeddingCache(Path(tmp) / "c.sqlite"))
        t0 = time.perf_counter()
        ours = cached.embed_documents(texts)
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached.embed_documents(texts)
        warm_s = time.perf_counter() - t0
    assert np.allclose(ours, raw, atol=1e-5)
    print(f"minilm raw SentenceTransformer.encode: {len(texts) / raw_s:8.1f} texts/s")
    print(f"minilm ragtune (cold cache):           {len(texts) / ours_s:8.1f} texts/s  = {raw_s / ours_s:.1%} of raw")
    print(f"minilm ragtune (warm cache):           {len(texts) / warm_s:8.1f} texts/s  (no model calls)")

    # bge-small int8 ONNX: the raw ceiling is the ONNX session at its best batch size
    from ragtune.embedding import length_sorted_batches, pad_batch

    bge = make_embedder(EmbeddingConfig(model="bge-small", device="cpu"))
    bge.load()
    for bs in (1, 8, 32):
        enc = bge.tokenizer.encode_batch(texts)
        t0 = time.perf_counter()
        for idx in length_sorted_batches([len(e.ids) for e in enc], bs):
            bge.session.run(None, pad_batch([enc[i] for i in idx]))
        print(f"bge-small raw ONNX session, batch {bs:2d}:  {len(texts) / (time.perf_counter() - t0):8.1f} texts/s")
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedEmbedder(bge, EmbeddingCache(Path(tmp) / "c.sqlite"))
        t0 = time.perf_counter()
        cached.embed_documents(texts)
        print(f"bge-small ragtune (cold cache):        {len(texts) / (time.perf_counter() - t0):8.1f} texts/s "
              "(one text per call: batch-invariant vectors)")


if __name__ == "__main__":
    main()
