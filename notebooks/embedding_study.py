# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Embedding model study
#
# Two embedders that run offline (all-MiniLM-L6-v2 through sentence-transformers, bge-small as int8 ONNX), each
# under pure vector search and under hybrid search with BM25.

# %% tags=["parameters"]
spec_path = "../experiments/embedding.yaml"
dataset = None  # another dataset folder than the spec's
queries = None  # only the first N judged queries
grid = None  # replace the spec's grid, e.g. {"chunking.size": [128, 256]}
configs = None  # replace the spec's explicit configs
out = None  # sweep folder; default experiments/out/<name>-notebook
home = None  # workspace folder (caches, LanceDB); default .ragtune
runner = "inprocess"  # or "papermill": one executed notebook per configuration, as `ragtune sweep` does
workers = 1
tracking_mode = None  # offline | online | disabled

# %%
from pathlib import Path

from IPython.display import Image, display

from ragtune.compare import compare_sweeps
from ragtune.sweep import SweepSpec, run_sweep

spec = SweepSpec.from_yaml(spec_path)
spec = spec.with_overrides(dataset=dataset, queries=queries, grid=grid, configs=configs,
                           tracking={**spec.tracking.model_dump(), "mode": tracking_mode or spec.tracking.mode})
out = Path(out or Path(spec_path).parent / "out" / f"{spec.name}-notebook")
print(f"{len(spec.expand())} configurations on {spec.dataset} -> {out}")
report = run_sweep(spec, out, workers=workers, runner=runner, home=Path(home) if home else None)
print({s: report.count(s) for s in ("done", "skipped", "failed")})

# %%
comparison, plots = compare_sweeps([out])
print(comparison.verdict())
comparison.table[["name", "mean", "ci_low", "ci_high", "delta", "p_holm", "effect_size", "latency_p95_ms"]].round(4)

# %%
for name in ("per_query_vs_baseline", "pareto"):
    if name in plots:
        display(Image(filename=str(plots[name])))
