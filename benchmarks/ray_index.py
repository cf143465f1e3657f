"""Index builds through Ray Data against the local path on the same machine: the msmarco passages (5,000) chunked,
scanned and embedded with the default embedder (MiniLM, ONNX int8) into a new table, every vector computed (a fresh
workspace each time, so no cache), locally (``Engine.index``: chunking in worker processes, the model here) and with
``ragtune index --ray local`` (Ray started in the process: actor stages on this one machine). Ray is started once,
timed apart; the two paths then alternate (``--rounds``), as timings here drift between runs. Each round also
builds ``--small`` documents each way just before: what a build costs whatever its size (on Ray: starting the
stages' actors, which import ragtune and load the model), so that the throughput is the marginal one, chunks per
second beyond that fixed cost.

    python benchmarks/ray_index.py [--documents N] [--rounds 2] [--model minilm]    # BENCHMARKS.md, "Index builds on Ray"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import dataset_path, machine

from ragtune.cluster import connect, steps_on_ray
from ragtune.config import RagConfig
from ragtune.data import Corpus, load_corpus
from ragtune.engine import Engine
from ragtune.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--small", type=int, default=10)
    args = ap.parse_args()
    print(machine())
    full = load_corpus(str(dataset_path("msmarco")))
    corpus = Corpus(full.documents[: args.documents], source=full.source)
    cfg = RagConfig(embedding={"model": args.model}, retrieval={"mode": "vector", "vector_index": "flat"})
    start = time.perf_counter()
    ray, _ = connect("local")
    print(f"Ray started in {time.perf_counter() - start:.1f} s")
    small = Corpus(full.documents[: args.small], source=full.source)
    seconds: dict[str, list[float]] = {"local": [], "ray": []}
    fixed: dict[str, list[float]] = {"local": [], "ray": []}
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:

        def build(name: str, docs: Corpus, label: str):
            workspace = Workspace(Path(tmp) / f"{name}-{label}")
            steps = steps_on_ray("local", cfg, workspace) if name == "ray" else None
            start = time.perf_counter()
            table, info = Engine(cfg, workspace).index(docs, steps)
            return time.perf_counter() - start, table, info

        for name in ("local", "ray"):  # warm-up: imports, the model files in the page cache
            build(name, small, "warm")
        for round_ in range(args.rounds):
            ids = {}
            for name in ("local", "ray"):
                base, _, tiny = build(name, small, f"small{round_}")
                took, table, info = build(name, corpus, f"full{round_}")
                seconds[name].append(took)
                fixed[name].append(base)
                rates[name].append((info.chunks - tiny.chunks) / max(took - base, 1e-9))
                ids[name] = table.to_arrow()["id"]
                print(f"{name}: {info.chunks} chunks from {info.documents} documents in {took:.1f} s; "
                      f"{args.small} documents in {base:.1f} s; beyond that {rates[name][-1]:.0f} chunks/s")
            assert ids["ray"].equals(ids["local"])  # the same rows in the same order
    ray.shutdown()
    local, on_ray = statistics.median(seconds["local"]), statistics.median(seconds["ray"])
    print(f"medians: local {local:.1f} s, Ray {on_ray:.1f} s: whole builds on Ray at {local / on_ray:.0%} of the local "
          f"path's pace once Ray runs")
    cost = {n: statistics.median(v) for n, v in fixed.items()}
    rate = {n: statistics.median(v) for n, v in rates.items()}
    print(f"fixed cost per build: local {cost['local']:.1f} s, Ray {cost['ray']:.1f} s; throughput beyond it: local "
          f"{rate['local']:.0f}, Ray {rate['ray']:.0f} chunks/s ({rate['ray'] / rate['local']:.0%})")


if __name__ == "__main__":
    main()
