"""A second `eval` of the same config with a warm cache: zero embedding calls, and how much faster than cold.

    python benchmarks/warm_cache.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import dataset_path, machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace


def main() -> None:
    ds = load_dataset(dataset_path("msmarco"))
    cfg = RagConfig.from_yaml(Path(__file__).parents[1] / "experiments" / "configs" / "hybrid.yaml")
    print(f"# {machine()}; msmarco ({len(ds.documents)} passages, {len(ds.queries)} queries), config {cfg.id}")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        times = []
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            res = evaluate(cfg, ds, Workspace(ws.home))  # a new Workspace: nothing kept in memory
            times.append(time.perf_counter() - t0)
            print(f"{label}: {times[-1]:7.2f} s, embedded {res.embedding.computed} texts, "
                  f"index {'built' if res.index.built else 'reused'}, nDCG@10 {res.summary['ndcg@10']:.4f}")
    print(f"warm is {times[0] / times[1]:.1f}x faster than cold")


if __name__ == "__main__":
    main()
