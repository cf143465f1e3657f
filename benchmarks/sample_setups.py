"""The shipped sample: the five setups of experiments/configs per kind of question, paired tests between every two,
and what the re-ranking pair cache saves on a sweep over depths (experiments/rerank.yaml's grid).

    python benchmarks/sample_setups.py            # results in BENCHMARKS.md, "The sample" and "Re-ranking pairs"
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from ragtune.config import RagConfig
from ragtune.data import load_dataset, sample_dataset_path
from ragtune.evaluation.run import evaluate
from ragtune.stats import randomization_test
from ragtune.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


def setups(ds, ws: Workspace) -> None:
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((REPO / "experiments/configs").glob("*.yaml"))}
    scores = {}
    for name, cfg in configs.items():
        cfg.pop("name", None)
        scores[name] = evaluate(RagConfig.from_dict(cfg), ds, ws).per_query["ndcg@10"]
    table = pd.DataFrame(scores)
    kinds = pd.Series({q.id: q.metadata.get("kind") for q in ds.queries}).reindex(table.index)
    print("nDCG@10, all questions\n" + table.mean().round(3).to_string())
    counts = kinds.value_counts()
    by_kind = table.groupby(kinds).mean().round(3)
    by_kind.insert(0, "questions", counts.reindex(by_kind.index))
    print("\nby kind\n" + by_kind.to_string())
    print("\npaired randomisation tests (unadjusted)")
    for a, b in itertools.combinations(table.columns, 2):
        p = randomization_test(table[a].to_numpy(), table[b].to_numpy())
        print(f"  {a:>14} vs {b:<14} {table[a].mean() - table[b].mean():+.3f}  p={p:.4f}")


def rerank_pairs(ds) -> None:
    depths = (10, 20, 50)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        base = {"chunking": {"strategy": "sentence", "size": 256, "overlap": 32}, "retrieval": {"mode": "hybrid"}}
        evaluate(RagConfig.from_dict(base), ds, ws)  # the table and the embeddings, outside the timing
        requested = scored = 0
        t0 = time.perf_counter()
        for depth in depths:
            r = evaluate(RagConfig.from_dict({**base, "rerank": {"model": "cross-encoder", "depth": depth}}), ds, ws)
            requested += r.extra["rerank"]["pairs"]
            scored += r.extra["rerank"]["scored_by_model"]
        wall = time.perf_counter() - t0
        ms = ws.pair_scores._conn().execute("SELECT AVG(ms), COUNT(*) FROM pairs").fetchone()
    print(f"\nre-ranking sweep over depths {depths}, {len(ds.judged())} questions: {requested} pairs asked for, "
          f"{scored} scored by the model ({requested / scored:.2f}x fewer calls), {wall:.1f} s wall; "
          f"the model's time per pair {ms[0]:.1f} ms ({ms[1]} pairs)")


if __name__ == "__main__":
    dataset = load_dataset(sample_dataset_path())
    with tempfile.TemporaryDirectory() as home:
        setups(dataset, Workspace(Path(home)))
    rerank_pairs(dataset)
