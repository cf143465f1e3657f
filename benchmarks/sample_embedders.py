"""The shipped sample per kind of question with each offline embedder (vector search, sentence chunks 256/32), and
the late-interaction re-ranker beside the cross-encoder on hybrid search: what multilingual-e5-small brings to the
questions asked in German, and what it costs to embed the corpus.

    python benchmarks/sample_embedders.py        # results in BENCHMARKS.md, "Embedders on the sample"
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import machine

from ragtune.config import RagConfig
from ragtune.data import load_dataset, sample_dataset_path
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace

SETUPS = {
    "vector minilm": {"retrieval": {"mode": "vector"}, "embedding": {"model": "minilm"}},
    "vector bge-small": {"retrieval": {"mode": "vector"}, "embedding": {"model": "bge-small"}},
    "vector multilingual-e5-small": {"retrieval": {"mode": "vector"}, "embedding": {"model": "multilingual-e5-small"}},
    "hybrid multilingual-e5-small": {"retrieval": {"mode": "hybrid"}, "embedding": {"model": "multilingual-e5-small"}},
    "hybrid minilm + cross-encoder@50": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "cross-encoder"}},
    "hybrid minilm + colbert@50": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "colbert"}},
}


def main() -> None:
    print(machine())
    ds = load_dataset(sample_dataset_path())
    kinds = pd.Series({q.id: q.metadata.get("kind") for q in ds.queries})
    scores, seconds = {}, {}
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace(Path(home))
        for name, cfg in SETUPS.items():
            t0 = time.perf_counter()
            result = evaluate(RagConfig.from_dict(cfg), ds, ws)
            seconds[name] = time.perf_counter() - t0
            scores[name] = result.per_query["ndcg@10"]
            print(f"{name}: nDCG@10 {scores[name].mean():.3f} in {seconds[name]:.0f} s (cold index for a new embedder)")
    table = pd.DataFrame(scores)
    by_kind = table.groupby(kinds.reindex(table.index)).mean().round(3)
    by_kind.loc["all"] = table.mean().round(3)
    print(by_kind.T.to_string())


if __name__ == "__main__":
    main()
