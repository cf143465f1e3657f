"""Late interaction as the first stage (``retrieval.late_interaction: colbert``) against one vector per chunk and
against late interaction as a re-ranker, on a shared BEIR subset: quality, index build time (model included, cold
cache), the table's size on disk and the search time per query (the question's encoding included).

    python benchmarks/late_interaction.py msmarco     # results in BENCHMARKS.md, "Late interaction"
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import dataset_path, machine

from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.engine import Engine
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace

SETUPS = {
    "vector minilm": {"retrieval": {"mode": "vector"}},
    "vector colbert (late interaction)": {"retrieval": {"mode": "vector", "late_interaction": "colbert"}},
    "hybrid colbert (late interaction) + BM25": {"retrieval": {"mode": "hybrid", "late_interaction": "colbert"}},
    "hybrid minilm + BM25": {"retrieval": {"mode": "hybrid"}},
    "hybrid minilm + BM25, colbert@50 re-ranks": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "colbert"}},
}


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    args = parser.parse_args()
    print(machine())
    ds = load_dataset(dataset_path(args.dataset))
    print(f"{args.dataset}: {len(ds.corpus.documents)} documents, {len(ds.judged())} judged questions")
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace(Path(home))
        for name, settings in SETUPS.items():
            config = RagConfig.from_dict({"chunking": {"strategy": "sentence", "size": 256, "overlap": 32},
                                          **settings})
            engine = Engine(config, ws)
            t0 = time.perf_counter()
            table, info = engine.index(ds.corpus)
            build = time.perf_counter() - t0
            disk = size_mb(Path(home) / "lancedb" / f"{table.name}.lance")
            result = evaluate(config, ds, ws)
            print(f"{name}: nDCG@10 {result.summary['ndcg@10']:.3f}, recall@100 {result.summary['recall@100']:.3f}; "
                  f"index {info.chunks} chunks {'built in ' + format(build, '.0f') + ' s' if info.built else 'shared'}"
                  f", {disk:.0f} MB; query p50 {np.median(result.per_query['latency_ms']):.0f} ms")


if __name__ == "__main__":
    main()
