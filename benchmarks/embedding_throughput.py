"""Embedding throughput through ragtune's path (cache lookups and writes included, cold cache) against the raw model
on the same texts and batch size.

    python benchmarks/embedding_throughput.py [--model minilm|bge-small] [--texts 1000] [--batch-size 64]

Each model is measured in its own process.
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
    ap.add_argument("--model", choices=["minilm", "bge-small"], default="minilm")
    args = ap.parse_args()
    with open(dataset_path("msmarco") / "corpus.jsonl") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(args.texts), f)]
    print(f"# {machine()}; {len(texts)} msmarco passages, batch size {args.batch_size}")
    (minilm if args.model == "minilm" else bge)(texts, args)


def minilm(texts: list[str], args) -> None:
    """On the CPU ragtune runs MiniLM on ONNX Runtime from its export; the ceiling is that session run raw on the same
    length-sorted batches (tokenisation counted on both sides). sentence-transformers' own encode (torch) is shown
    as well: it was the path before. The paths alternate, three times each, and the medians are compared."""
    import statistics

    from sentence_transformers import SentenceTransformer

    from ragtune.models.tokens import Tokens, length_sorted_batches

    embedder = make_embedder(EmbeddingConfig(model="minilm", device="cpu", batch_size=args.batch_size))
    embedder.load()
    torch_model = SentenceTransformer(embedder.path, device="cpu")
    names = [i.name for i in embedder.session.get_inputs()]
    torch_model.encode(texts[:64], batch_size=args.batch_size)  # warm up
    raw, ours, torch_runs, warm = [], [], [], []
    for _ in range(3):
        t0 = time.perf_counter()
        enc = Tokens.of(embedder.tokenizer.encode_batch(texts))
        for idx in length_sorted_batches(enc.lengths, args.batch_size):
            embedder.session.run(None, enc.padded(idx, names, embedder.pad_id))
        raw.append(len(texts) / (time.perf_counter() - t0))
        with tempfile.TemporaryDirectory() as tmp:
            cached = CachedEmbedder(embedder, EmbeddingCache(Path(tmp) / "c.sqlite"))
            t0 = time.perf_counter()
            vecs = cached.embed_documents(texts)
            ours.append(len(texts) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            cached.embed_documents(texts)
            warm.append(len(texts) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        reference = torch_model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
        torch_runs.append(len(texts) / (time.perf_counter() - t0))
    assert np.allclose(vecs, reference, atol=1e-5)  # the same vectors through either runtime
    r, o, t = statistics.median(raw), statistics.median(ours), statistics.median(torch_runs)
    runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    print(f"minilm raw ONNX Runtime session:        {r:8.1f} texts/s (runs: {runs(raw)})")
    print(f"minilm ragtune (cold cache):            {o:8.1f} texts/s = {o / r:.1%} of raw (runs: {runs(ours)})")
    print(f"minilm ragtune (warm cache):            {statistics.median(warm):8.1f} texts/s (no model calls)")
    print(f"minilm SentenceTransformer.encode, torch: {t:6.1f} texts/s (runs: {runs(torch_runs)}); "
          f"ONNX Runtime is {r / t:.2f}x")


def bge(texts: list[str], args) -> None:
    """bge-small int8 ONNX: the ceiling is the raw session at batch 1 (ragtune runs it one text per call so that a
    text's vector does not depend on its batch). Timings on this machine drift by 20% between runs, so the raw and
    the ragtune paths alternate, three times each, and the medians are compared."""
    import statistics

    from ragtune.models.tokens import Tokens, length_sorted_batches

    bge = make_embedder(EmbeddingConfig(model="bge-small", device="cpu"))
    bge.load()
    raw, ours = [], []
    for rep in range(3):
        t0 = time.perf_counter()
        enc = Tokens.of(bge.tokenizer.encode_batch(texts))  # tokenisation counted on both sides
        for idx in length_sorted_batches(enc.lengths, 1):
            bge.session.run(None, enc.padded(idx))
        raw.append(len(texts) / (time.perf_counter() - t0))
        with tempfile.TemporaryDirectory() as tmp:
            cached = CachedEmbedder(bge, EmbeddingCache(Path(tmp) / "c.sqlite"))
            t0 = time.perf_counter()
            cached.embed_documents(texts)
            ours.append(len(texts) / (time.perf_counter() - t0))
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"bge-small raw ONNX session, batch 1:   {r:8.1f} texts/s (runs: {', '.join(f'{x:.1f}' for x in raw)})")
    print(f"bge-small ragtune (cold cache):        {o:8.1f} texts/s = {o / r:.1%} of raw "
          f"(runs: {', '.join(f'{x:.1f}' for x in ours)})")
    for bs in (8, 32):
        enc = Tokens.of(bge.tokenizer.encode_batch(texts))
        t0 = time.perf_counter()
        for idx in length_sorted_batches(enc.lengths, bs):
            bge.session.run(None, enc.padded(idx))
        print(f"bge-small raw ONNX session, batch {bs:2d}:  {len(texts) / (time.perf_counter() - t0):8.1f} texts/s "
              "(batch-dependent vectors)")


if __name__ == "__main__":
    main()
