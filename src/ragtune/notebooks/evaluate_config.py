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
# # Evaluate one configuration
#
# `ragtune sweep` executes this notebook once per configuration of a sweep (with papermill), and keeps the executed
# copy beside the result. It also runs on its own: change the parameters below and run all cells.

# %% tags=["parameters"]
config_yaml = "retrieval:\n  mode: hybrid\n"  # a RagConfig as YAML
dataset = "sample"  # a dataset folder, or 'sample'
out_dir = "../runs/notebook"  # result/ is written here
split = "test"
queries = None  # only the first N judged queries
home = None  # workspace folder (caches, LanceDB); default .ragtune
sweep = None  # the sweep's name: the W&B group
tracking_mode = None  # offline | online | disabled; default offline
project = "ragtune"

# %%
from ragtune.experiments.sweep import run_config

result = run_config(config_yaml, dataset, out_dir, split, queries, home, sweep, tracking_mode, project)
print(f"config {result.config.id} on {result.dataset}: {len(result.per_query)} queries")

# %%
import pandas as pd

pd.Series(result.summary, name="value").to_frame()

# %%
import matplotlib.pyplot as plt

metric = result.config.evaluation.metrics[0]
ax = result.per_query[metric].plot.hist(bins=20, figsize=(6, 3), title=f"{metric} per query")
ax.set_xlabel(metric)
plt.show()

# %%
result.per_query.sort_values(metric).head(10)  # the hardest queries
