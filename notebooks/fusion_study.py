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
# # Hybrid fusion study
#
# Hybrid search runs a vector search and a BM25 search and fuses the two lists. Reciprocal rank fusion (RRF)
# uses ranks only, with a constant k; the linear combination mixes normalised scores with a weight on the vector
# side. The baseline is BM25 alone.

# %% tags=["parameters"]
spec_path = "../experiments/fusion.yaml"
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
import matplotlib.pyplot as plt

from ragtune.experiments.sweep import read_results

summary, _ = read_results([study.out])
board = comparison.table.join(summary.set_index("config_id")[["param.retrieval.fusion", "param.retrieval.rrf_k",
                                                               "param.retrieval.weight"]])
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, (fusion, param) in zip(axes, (("rrf", "param.retrieval.rrf_k"), ("linear", "param.retrieval.weight"))):
    part = board[board["param.retrieval.fusion"] == fusion].sort_values(param)
    ax.errorbar(part[param], part["mean"], yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                marker="o", capsize=3)
    ax.set_xlabel(param.split(".")[-1])
    ax.set_title(fusion)
axes[0].set_ylabel(comparison.metric)
plt.tight_layout()
plt.show()

# %%
if "pareto" in plots:
    display(Image(filename=str(plots["pareto"])))
