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
# # Compare a sweep
#
# The leaderboard of a sweep (or of its shards together): mean and 95% bootstrap interval per configuration, a paired
# test of each against the baseline on per-query scores, Holm's correction across the sweep, and effect sizes. A
# winner is named only when its gain survives the correction.

# %% tags=["parameters"]
sweep_dirs = ["../experiments/out/chunking"]  # one sweep, or its shards
metric = None  # default: the spec's primary metric
baseline = None  # default: the spec's baseline
test = "randomization"  # or "t-test"
alpha = 0.05

# %%
from pathlib import Path

from IPython.display import Image, display

from ragtune.experiments.leaderboard import compare_sweeps

comparison, plots = compare_sweeps([Path(d) for d in sweep_dirs], metric, baseline, test, alpha)
print(comparison.verdict())
comparison.table.round(4)

# %%
for path in plots.values():
    display(Image(filename=str(path)))
