"""Ranking metrics through ranx. Names are ranx's (``ndcg@10``, ``recall@100``, ``mrr@10``, ``map``,
``precision@10``, ``hit_rate@5``, ``r-precision``...); nDCG uses graded gains as trec_eval does.

Queries are scored when they have at least one relevant judgment; a query the system returned nothing for scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pandas as pd


#: ranx metrics that take an optional cut-off, and those that take none.
CUTOFF_METRICS = {"ndcg", "ndcg_burges", "recall", "precision", "mrr", "map", "hit_rate", "hits", "f1", "dcg"}
PLAIN_METRICS = {"r-precision", "bpref"}
#: the answer scores an evaluation reports when the configuration generates answers (higher is better).
ANSWER_METRICS = ("faithfulness", "answer_relevance")
_NAME = re.compile(r"^(?P<base>[a-z_\-]+)(@(?P<k>\d+))?$")


def check_metric(name: str) -> None:
    m = _NAME.match(name)
    ok = m is not None and (
        (m["base"] in CUTOFF_METRICS and (m["k"] is None or int(m["k"]) > 0))
        or (m["base"] in PLAIN_METRICS and m["k"] is None)
    )
    if not ok:
        known = ", ".join(sorted(CUTOFF_METRICS | PLAIN_METRICS))
        raise ValueError(f"unknown metric {name!r}; expected NAME or NAME@K with NAME one of {known}")


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[str]], metrics: Sequence[str]
) -> pd.DataFrame:
    """Per-query scores (rows: query ids with a relevant judgment; columns: metrics) for a ranked run
    ``{query: [doc ids, best first]}``."""
    from ranx import Qrels, Run, evaluate

    judged = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if not judged:
        return pd.DataFrame(columns=list(metrics), dtype=float)
    ranked = {}
    for q in judged:
        docs = list(dict.fromkeys(run.get(q, ())))  # drop repeats, keep order
        ranked[q] = {d: float(len(docs) - i) for i, d in enumerate(docs)}
    if not any(ranked.values()):  # ranx cannot build an all-empty run
        return pd.DataFrame(0.0, index=pd.Index(sorted(judged), name="query_id"), columns=list(metrics))
    scores = evaluate(Qrels(judged), Run(ranked), list(metrics), return_mean=False, make_comparable=True)
    if len(metrics) == 1:
        scores = {metrics[0]: scores}
    frame = pd.DataFrame({m: scores[m] for m in metrics}, index=pd.Index(sorted(judged), name="query_id"))
    return frame.astype(float)


def trec_run_lines(run: Mapping[str, Sequence[str]], tag: str = "ragtune") -> list[str]:
    """TREC run format (``qid Q0 doc rank score tag``); scores follow the rank so every tool reads the same order."""
    lines = []
    for q, docs in run.items():
        n = len(docs)
        lines.extend(f"{q} Q0 {d} {r} {n - r + 1} {tag}" for r, d in enumerate(docs, 1))
    return lines
