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
# # ragtune quickstart
#
# Four retrieval setups on one corpus, scored against relevance judgments: BM25, dense vectors, hybrid search
# (both fused by reciprocal rank fusion) and hybrid search with a cross-encoder re-ranker. The corpus is the sample
# that ships with ragtune (a fictional company's handbook with 51 judged questions); point `dataset` at any
# BEIR-format folder to use your own.

# %% tags=["parameters"]
dataset = "sample"
queries = None  # only the first N judged queries
home = None  # workspace folder (embedding cache, LanceDB tables); default .ragtune

# %%
from pathlib import Path

import pandas as pd

from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace

ds = load_dataset(dataset, queries=queries)
workspace = Workspace(Path(home)) if home else Workspace.default()
print(f"{ds.name}: {len(ds.documents)} documents, {len(ds.queries)} queries")

# %%
setups = {
    "BM25": {"retrieval": {"mode": "fts"}},
    "vector": {"retrieval": {"mode": "vector"}},
    "hybrid": {"retrieval": {"mode": "hybrid", "fusion": "rrf"}},
    "hybrid + rerank": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "cross-encoder", "depth": 20}},
}
results = {name: evaluate(RagConfig.from_dict(cfg), ds, workspace) for name, cfg in setups.items()}
table = pd.DataFrame({name: r.summary for name, r in results.items()}).T
table.index.name = "setup"
table.round(4)

# %% [markdown]
# The index is built once: every setup shares the chunking and the embedder, so the later ones reuse the LanceDB
# table and the cached embeddings.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3))
table["ndcg@10"].plot.barh(ax=ax, color="tab:blue")
ax.set_xlabel("nDCG@10")
ax.set_xlim(0, 1)
ax.set_title("retrieval quality by setup")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Search
# The same engine answers ad-hoc queries; hits carry their document, chunk and character span.

# %%
from ragtune.engine import Engine

engine = Engine(RagConfig.from_dict(setups["hybrid"]), workspace)
table_, _ = engine.index(ds.corpus)
hits = engine.retriever(table_).search(ds.queries[0].text, 5).documents(5)
print(ds.queries[0].text)
pd.DataFrame([{"rank": h.rank, "document": h.doc_id, "score": round(h.score, 4), "text": h.text[:100]} for h in hits])
