"""Do half precision and the dequantized cross-encoder change retrieval quality? msmarco, on the CPU, real weights.

    python benchmarks/precision.py

Each variant runs in its own workspace (precision and runtime are runtime fields: they share one embedding cache and
one config id, which is what this benchmark checks is safe). Vector search with MiniLM in fp32 (ONNX Runtime), fp16
and bf16 (torch); hybrid search + cross-encoder@50 with the int8 ONNX model and with its dequantized weights under
torch (fp32 on the CPU; fp16 is what CUDA runs). Per-query nDCG@10 of each variant is compared with the reference by
a paired randomization test and by the largest per-query difference.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from _common import dataset_path, machine
from ragtune.stats import randomization_test
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace

BASE = {"chunking": {"size": 512, "overlap": 0}}
GROUPS = {
    "vector search, MiniLM": ("fp32 (ONNX Runtime)", {
        "fp32 (ONNX Runtime)": {"retrieval": {"mode": "vector"}},
        "fp16 (torch)": {"retrieval": {"mode": "vector"}, "embedding": {"precision": "fp16", "runtime": "torch"}},
        "bf16 (torch)": {"retrieval": {"mode": "vector"}, "embedding": {"precision": "bf16", "runtime": "torch"}},
    }),
    "hybrid + cross-encoder@50": ("int8 ONNX", {
        "int8 ONNX": {"rerank": {"model": "cross-encoder", "depth": 50}},
        "dequantized, torch fp32": {"rerank": {"model": "cross-encoder", "depth": 50, "runtime": "torch"}},
    }),
}


def main() -> None:
    ds = load_dataset(dataset_path("msmarco"))
    print(f"# {machine()}; msmarco {len(ds.documents)} passages, {sum(1 for q in ds.queries if q.id in ds.qrels)} "
          "judged queries")
    print("| variant | nDCG@10 | recall@100 | MRR@10 | largest per-query nDCG@10 change | p (paired) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for group, (reference, variants) in GROUPS.items():
        ref = None
        for name, overrides in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                cfg = RagConfig.from_dict({**BASE, **overrides})
                res = evaluate(cfg, ds, Workspace(Path(tmp)))
                seconds = time.perf_counter() - t0
            s, per = res.summary, res.per_query["ndcg@10"]
            if ref is None:
                ref, diff, p = per, "", ""
            else:
                diff = f"{np.abs(per.values - ref.loc[per.index].values).max():.4f}"
                p = f"{randomization_test(ref.loc[per.index].values, per.values):.3f}"
            print(f"| {group}: {name} | {s['ndcg@10']:.4f} | {s['recall@100']:.4f} | {s['mrr@10']:.4f} | {diff} | "
                  f"{p} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
