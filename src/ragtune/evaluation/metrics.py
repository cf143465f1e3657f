"""Ranking metrics. Names are ranx's (``ndcg@10``, ``recall@100``, ``mrr@10``, ``map``, ``precision@10``,
``hit_rate@5``, ``r-precision``...); nDCG uses graded gains as trec_eval does.

The common measures are computed by trec_eval itself (pytrec_eval, a C extension: nothing to compile, so a process
that scores one run pays milliseconds, not the seconds ranx's numba functions take to compile in every new process);
the others by ranx. A test holds the two equal on every measure both compute.

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


def trec_measure(name: str) -> tuple[str, str, int | None] | None:
    """(trec_eval measure, its result key, the cut-off to apply to the run first) for a metric trec_eval computes
    exactly as ranx does; None for the others."""
    m = _NAME.match(name)
    base, k = (m["base"], m["k"]) if m else (None, None)
    if base == "ndcg":
        return (f"ndcg_cut.{k}", f"ndcg_cut_{k}", None) if k else ("ndcg", "ndcg", None)
    if base == "map":
        return (f"map_cut.{k}", f"map_cut_{k}", None) if k else ("map", "map", None)
    if base == "mrr":  # trec_eval's reciprocal rank has no cut-off: cut the run instead
        return "recip_rank", "recip_rank", int(k) if k else None
    if k and base in ("recall", "precision", "hit_rate"):
        measure = {"recall": "recall", "precision": "P", "hit_rate": "success"}[base]
        return f"{measure}.{k}", f"{measure}_{k}", None
    if name == "r-precision":
        return "Rprec", "Rprec", None
    return None


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[str]], metrics: Sequence[str],
    backend: str = "auto",
) -> pd.DataFrame:
    """Per-query scores (rows: query ids with a relevant judgment; columns: metrics) for a ranked run
    ``{query: [doc ids, best first]}``. ``backend``: "auto" (trec_eval where it computes the metric, else ranx),
    or "ranx" (every metric through ranx)."""
    judged = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    index = pd.Index(sorted(judged), name="query_id")
    if not judged:
        return pd.DataFrame(columns=list(metrics), dtype=float)
    ranked = {q: list(dict.fromkeys(run.get(q, ()))) for q in judged}  # drop repeats, keep order
    trec = {m: trec_measure(m) for m in metrics} if backend == "auto" else {}
    columns = {}
    by_cut: dict[int | None, list[str]] = {}
    for m, spec in trec.items():
        if spec is not None:
            by_cut.setdefault(spec[2], []).append(m)
    for cut, names in by_cut.items():
        columns.update(_trec_eval(judged, ranked, cut, {m: trec[m][:2] for m in names}, index))
    rest = [m for m in metrics if m not in columns]
    if rest:
        columns.update(_ranx(judged, ranked, rest, index))
    return pd.DataFrame({m: columns[m] for m in metrics}, index=index).astype(float)


def _scored(ranked: Mapping[str, list[str]], cut: int | None = None) -> dict[str, dict[str, float]]:
    """Scores that give the run's order (rank 1 highest; no ties, so no tool breaks them its own way)."""
    return {q: {d: float(len(docs) - i) for i, d in enumerate(docs[:cut])} for q, docs in ranked.items()}


def _trec_eval(judged, ranked, cut: int | None, measures: dict[str, tuple[str, str]], index) -> dict[str, list]:
    import pytrec_eval

    scored = {q: docs for q, docs in _scored(ranked, cut).items() if docs}
    out = pytrec_eval.RelevanceEvaluator(judged, {m for m, _ in measures.values()}).evaluate(scored)
    return {name: [out[q][key] if q in out else 0.0 for q in index] for name, (_, key) in measures.items()}


def _ranx(judged, ranked, metrics: list[str], index) -> dict[str, list]:
    from ranx import Qrels, Run, evaluate

    scored = _scored(ranked)
    if not any(scored.values()):  # ranx cannot build an all-empty run
        return {m: [0.0] * len(index) for m in metrics}
    scores = evaluate(Qrels(judged), Run(scored), list(metrics), return_mean=False, make_comparable=True)
    if len(metrics) == 1:
        scores = {metrics[0]: scores}
    return {m: list(scores[m]) for m in metrics}


def trec_run_lines(run: Mapping[str, Sequence[str]], tag: str = "ragtune") -> list[str]:
    """TREC run format (``qid Q0 doc rank score tag``); scores follow the rank so every tool reads the same order."""
    lines = []
    for q, docs in run.items():
        n = len(docs)
        lines.extend(f"{q} Q0 {d} {r} {n - r + 1} {tag}" for r, d in enumerate(docs, 1))
    return lines
