"""Index builds through Ray Data against the local path on the same machine: the msmarco passages (5,000) chunked,
scanned and embedded with the default embedder (MiniLM, ONNX int8) into a new table, every vector computed (a fresh
workspace each time, so no cache), locally (``Engine.index``: chunking in worker processes, the model here) and with
``ragtune index --ray local`` (Ray started in the process: actor stages on this one machine). Ray is started once,
timed apart; the two paths then alternate (``--rounds``), as timings here drift between runs.

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
    args = ap.parse_args()
    print(machine())
    full = load_corpus(str(dataset_path("msmarco")))
    corpus = Corpus(full.documents[: args.documents], source=full.source)
    cfg = RagConfig(embedding={"model": args.model}, retrieval={"mode": "vector", "vector_index": "flat"})
    start = time.perf_counter()
    ray, _ = connect("local")
    print(f"Ray started in {time.perf_counter() - start:.1f} s")
    seconds: dict[str, list[float]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            ids = {}
            for name in ("local", "ray"):
                workspace = Workspace(Path(tmp) / f"{name}{round_}")
                steps = steps_on_ray("local", cfg, workspace) if name == "ray" else None
                start = time.perf_counter()
                table, info = Engine(cfg, workspace).index(corpus, steps)
                seconds[name].append(time.perf_counter() - start)
                ids[name] = table.to_arrow()["id"]
                print(f"{name}: {info.chunks} chunks from {info.documents} documents in {seconds[name][-1]:.1f} s "
                      f"({info.chunks / seconds[name][-1]:.0f} chunks/s)")
            assert ids["ray"].equals(ids["local"])  # the same rows in the same order
    ray.shutdown()
    local, on_ray = statistics.median(seconds["local"]), statistics.median(seconds["ray"])
    print(f"medians: local {local:.1f} s, Ray {on_ray:.1f} s: Ray Data's throughput is {local / on_ray:.0%} of the "
          f"local path's once Ray runs")

if __name__ == "__main__":
    main()
