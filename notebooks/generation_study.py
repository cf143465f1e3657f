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
# # Generation study
#
# The same retrieval, different answers: how many retrieved chunks the generator sees (`context_k`), how long the
# answer is (`max_sentences`, extractive) or which prompt version writes it (hosted models). Answers are scored
# offline: faithfulness (the share of the answer's sentences supported by the context), hallucination rate,
# answer relevance to the question, context precision (chunks from judged-relevant documents) and, where the
# questions carry reference answers, answer F1. More context can help relevance and hurt precision.

# %% tags=["parameters"]
spec_path = "../experiments/generation.yaml"
dataset = None  # another dataset folder than the spec's
queries = None  # only the first N judged queries
grid = None  # replace the spec's grid, e.g. {"generation.prompt": ["answer-v1", "my-prompt.txt"]}
configs = None  # replace the spec's explicit configs
out = None  # sweep folder; default experiments/out/<name>-notebook
home = None  # workspace folder (caches, LanceDB); default .ragtune
runner = "inprocess"  # or "papermill"
workers = 1
tracking_mode = None  # offline | online | disabled

# %%
from ragtune.experiments.study import run_study

study = run_study(spec_path, out, runner, workers, home, tracking_mode, dataset=dataset, queries=queries,
                  grid=grid, configs=configs)
comparison = study.comparison
print({s: study.report.count(s) for s in ("done", "skipped", "failed")})
print(comparison.verdict())
study.leaderboard()

# %%
import matplotlib.pyplot as plt

from ragtune.experiments.sweep import read_results

summary, results = read_results([study.out])
scores = [m for m in ("answer_relevance", "faithfulness", "hallucination", "context_precision", "answer_f1")
          if m in results]
params = [c for c in summary.columns if c.startswith("param.")]
table = results.groupby("config_id")[scores].mean().join(summary.set_index("config_id")[params])
display_cols = params + scores
table[display_cols].sort_values(params).round(4)

# %%
varied = [p for p in params if table[p].nunique() > 1]
if varied:
    x = varied[0]
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3), squeeze=False)
    for ax, metric in zip(axes[0], scores):
        for key, part in table.groupby(varied[1:] or (lambda _: "all")):
            part = part.sort_values(x)
            ax.plot(part[x], part[metric], marker="o", label=str(key))
        ax.set_title(metric)
        ax.set_xlabel(x.removeprefix("param."))
    axes[0][-1].legend(title=", ".join(v.removeprefix("param.") for v in varied[1:]) or None, fontsize=7)
    plt.tight_layout()
    plt.show()
