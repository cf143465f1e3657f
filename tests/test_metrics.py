import io
import json
import os
import random
import subprocess
import sys

import pandas as pd
import pytest

from ragtune.evaluation import evaluate_run, span_qrels, span_scores, trec_run_lines
from ragtune.types import Hit, Span

PYTREC = {"ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"), "recall@10": ("recall.10", "recall_10"),
          "recall@100": ("recall.100", "recall_100"), "map": ("map", "map"), "precision@10": ("P.10", "P_10"),
          "mrr@10": ("recip_rank", "recip_rank")}


def pytrec_scores(qrels, run, metric):
    import pytrec_eval

    measure, key = PYTREC[metric]
    if metric == "mrr@10":  # trec_eval's recip_rank has no cut-off: cut the run instead
        run = {q: docs[:10] for q, docs in run.items()}
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    judged = {q: r for q, r in qrels.items() if any(g > 0 for g in r.values())}
    for q in judged:
        scored.setdefault(q, {})
    out = pytrec_eval.RelevanceEvaluator(judged, {measure}).evaluate(scored)
    return {q: out[q][key] if q in out else 0.0 for q in judged}


def random_case(seed, n_queries=30, n_docs=300):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 40))}
        if q % 7 != 3:  # some queries get no results at all
            run[qid] = rng.sample(docs, rng.randint(1, 150))
    qrels["q-unjudged"] = {"d1": 0}  # only a non-relevant judgment: not scored
    return qrels, run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_equal_pytrec_eval(seed):
    qrels, run = random_case(seed)
    metrics = list(PYTREC)
    ours = evaluate_run(qrels, run, metrics)
    assert "q-unjudged" not in ours.index and len(ours) == 30
    for m in metrics:
        ref = pytrec_scores(qrels, run, m)
        for q, value in ref.items():
            assert ours.loc[q, m] == pytest.approx(value, abs=1e-6), (m, q)


TREC_AND_RANX = ["ndcg@10", "ndcg@3", "ndcg", "map", "map@10", "mrr@10", "mrr", "recall@5", "recall@100",
                 "precision@5", "hit_rate@5", "r-precision"]


def interpreted(qrels, run, metrics, backend: str = "ranx") -> pd.DataFrame:
    """``evaluate_run`` (by default ranx's numbers) with ranx's numba functions run as the Python they are written in
    (``NUMBA_DISABLE_JIT``, in a process of its own): the same code, without the 100 s that compiling its parallel
    functions for twelve measures costs a fresh environment (90 s for f1 and hits alone)."""
    code = ("import json, sys; from ragtune.evaluation import evaluate_run; a = json.load(sys.stdin); "
            "print(evaluate_run(a['qrels'], a['run'], a['metrics'], a['backend'])"
            ".to_json(orient='split', double_precision=15))")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps({"qrels": qrels, "run": run,
                                                                          "metrics": metrics, "backend": backend}),
                          capture_output=True, text=True, env={**os.environ, "NUMBA_DISABLE_JIT": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_json(io.StringIO(proc.stdout), orient="split")


@pytest.mark.parametrize("seed", [4, 5])
def test_trec_eval_path_equals_ranx_on_every_measure_both_compute(seed):
    """The common measures go through trec_eval (no JIT to compile); ranx, an independent implementation, must give
    the same numbers for each of them."""
    from ragtune.evaluation.metrics import trec_measure

    assert all(trec_measure(m) is not None for m in TREC_AND_RANX)
    qrels, run = random_case(seed)
    fast = evaluate_run(qrels, run, TREC_AND_RANX)
    ranx = interpreted(qrels, run, TREC_AND_RANX)
    assert list(fast.index) == list(ranx.index) and len(fast) == 30
    for m in TREC_AND_RANX:
        assert fast[m].to_numpy() == pytest.approx(ranx[m].to_numpy(), abs=1e-9), m


def test_metrics_only_ranx_computes_mix_with_the_others():
    from ragtune.evaluation.metrics import trec_measure

    qrels, run = random_case(6)
    assert trec_measure("f1@10") is None and trec_measure("hits@10") is None
    mixed = interpreted(qrels, run, ["ndcg@10", "f1@10", "hits@10"], backend="auto")  # trec_eval and ranx mixed
    alone = interpreted(qrels, run, ["f1@10", "hits@10"])
    assert list(mixed.columns) == ["ndcg@10", "f1@10", "hits@10"]
    assert mixed[["f1@10", "hits@10"]].to_numpy() == pytest.approx(alone.to_numpy())


def test_metrics_equal_pytrec_eval_on_a_real_bm25_run(sample, workspace):
    from ragtune.config import RagConfig
    from ragtune.evaluation.run import evaluate

    result = evaluate(RagConfig.from_dict({"retrieval": {"mode": "fts"}}), sample, workspace)
    for m in PYTREC:
        ref = pytrec_scores(sample.qrels, result.run, m)
        assert result.per_query[m].to_dict() == pytest.approx(ref, abs=1e-6)


def test_graded_gains_matter_for_ndcg():
    qrels = {"q": {"a": 3, "b": 1}}
    better = evaluate_run(qrels, {"q": ["a", "b"]}, ["ndcg@10"]).loc["q", "ndcg@10"]
    worse = evaluate_run(qrels, {"q": ["b", "a"]}, ["ndcg@10"]).loc["q", "ndcg@10"]
    assert better == pytest.approx(1.0) and worse < better


def test_empty_run_scores_zero():
    frame = evaluate_run({"q": {"a": 1}}, {}, ["ndcg@10", "recall@100"])
    assert frame.loc["q"].tolist() == [0.0, 0.0]


def test_trec_run_lines_keep_the_order():
    lines = trec_run_lines({"q1": ["b", "a"]}, tag="t")
    assert lines == ["q1 Q0 b 1 2 t", "q1 Q0 a 2 1 t"]


# -- span scores against a brute-force character-set computation ---------------------------------------------


def brute_span(hits, refs):
    ref = {(r.doc_id, i) for r in refs for i in range(r.start, r.end)}
    got = {(h.doc_id, i) for h in hits for i in range(h.start, h.end)}
    retrieved = sum(h.end - h.start for h in hits)
    inter = len(ref & got)
    return {"span_recall": inter / len(ref), "span_precision": inter / retrieved if retrieved else 0.0,
            "span_iou": inter / (retrieved + len(ref) - inter)}


@pytest.mark.parametrize("seed", range(20))
def test_span_scores_equal_brute_force(seed):
    rng = random.Random(seed)
    refs, hits = [], []
    for _ in range(rng.randint(1, 3)):
        s = rng.randint(0, 900)
        refs.append(Span(rng.choice(["x", "y"]), s, s + rng.randint(1, 120)))
    for r in range(rng.randint(0, 6)):
        s = rng.randint(0, 900)
        hits.append(Hit(f"c{r}", rng.choice(["x", "y", "z"]), 1.0, r + 1, "", s, s + rng.randint(1, 200)))
    ours = span_scores(hits, refs)
    ref = brute_span(hits, refs)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12)


def test_span_qrels_mark_overlapping_chunks():
    refs = [Span("d", 10, 20)]
    chunks = [("c0", "d", 0, 10), ("c1", "d", 5, 11), ("c2", "d", 19, 30), ("c3", "e", 10, 20), ("c4", "d", 20, 25)]
    assert span_qrels(chunks, refs) == {"c1": 1, "c2": 1}
