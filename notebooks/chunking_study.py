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
# # Chunking study
#
# How text is cut decides what the retriever can find: chunks that are too long dilute the match, chunks that are
# too short lose context. This study crosses chunking strategy (sentence-aligned, token windows, Markdown sections),
# chunk size and overlap under dense retrieval, with everything else fixed, and tests each against the baseline.

# %% tags=["parameters"]
spec_path = "../experiments/chunking.yaml"
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
from IPython.display import Image, display

from ragtune.experiments.study import run_study

study = run_study(spec_path, out, runner, workers, home, tracking_mode, dataset=dataset, queries=queries,
                  grid=grid, configs=configs)
comparison, plots = study.comparison, study.plots
print({s: study.report.count(s) for s in ("done", "skipped", "failed")})
print(comparison.verdict())
study.leaderboard()

# %%
for name in ("metric_vs_chunk_size", "pareto"):
    if name in plots:
        display(Image(filename=str(plots[name])))
