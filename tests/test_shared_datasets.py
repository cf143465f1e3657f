"""End to end on the real benchmark subsets in ../shared/datasets (skipped, with the reason, when absent)."""

import math
import random
import re
import unicodedata
from collections import Counter

import pytest

from conftest import shared_dataset
from ragtune.config import RagConfig
from ragtune.data import Corpus, Dataset, load_dataset
from ragtune.engine import Engine
from ragtune.evaluation.run import evaluate
from ragtune.evaluation import evaluate_run

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def msmarco():
    """15 judged queries over their judged passages plus 600 others (about 2,200 passages)."""
    ds = load_dataset(shared_dataset("msmarco"))
    judged = [q for q in ds.queries if any(g > 0 for g in ds.qrels.get(q.id, {}).values())][:15]
    keep = {d for q in judged for d in ds.qrels[q.id]}
    others = sorted(d.id for d in ds.documents if d.id not in keep)
    keep |= set(random.Random(0).sample(others, 600))
    docs = [d for d in ds.documents if d.id in keep]
    return Dataset("msmarco-subset", Corpus(docs, 0, "msmarco-subset"), judged, {q.id: ds.qrels[q.id] for q in judged})


def tokens(text):
    """LanceDB's 'simple' tokenizer without stemming or stop words: alphanumeric runs, lower case, ASCII-folded,
    at most 40 bytes."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [w for w in re.findall(r"[^\W_]+", text.lower()) if len(w.encode()) <= 40]


def independent_bm25(docs, query, k1=1.2, b=0.75):
    toks = [tokens(d.text) for d in docs]
    n, avg = len(toks), sum(map(len, toks)) / len(toks)
    df = Counter(w for t in toks for w in set(t))
    scored = []
    for doc, t in zip(docs, toks):
        tf = Counter(t)
        s = sum(
            math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) * tf[w] * (k1 + 1) / (tf[w] + k1 * (1 - b + b * len(t) / avg))
            for w in set(tokens(query)) if w in tf
        )
        if s > 0:
            scored.append((s, doc.id))
    return sorted(scored, key=lambda x: -x[0])


def test_bm25_matches_an_independent_bm25(msmarco, workspace):
    # One passage is one chunk at this size, so chunk BM25 is passage BM25.
    cfg = RagConfig.from_dict({"chunking": {"size": 512, "overlap": 0},
                               "retrieval": {"mode": "fts", "fts": {"stem": False, "remove_stop_words": False}}})
    result = evaluate(cfg, msmarco, workspace)
    assert result.index.chunks == len(msmarco.documents)
    ours = {q.id: [d for _, d in independent_bm25(msmarco.documents, q.text)[:100]] for q in msmarco.queries}
    reference = evaluate_run(msmarco.qrels, ours, ["ndcg@10"])["ndcg@10"]
    assert result.summary["ndcg@10"] == pytest.approx(reference.mean(), abs=0.005)
    engine = Engine(cfg, workspace)
    retriever = engine.retriever(engine.index(msmarco.corpus)[0])
    for q in msmarco.queries[:5]:
        got = retriever.search(q.text, 10).documents(10)
        want = independent_bm25(msmarco.documents, q.text)[:10]
        assert [h.score for h in got] == pytest.approx([s for s, _ in want], rel=1e-3)


@pytest.fixture(scope="module")
def msmarco_results(msmarco, workspace):
    configs = {
        "bm25": {"retrieval": {"mode": "fts"}},
        "vector": {"retrieval": {"mode": "vector"}},
        "hybrid-rrf": {"retrieval": {"mode": "hybrid", "fusion": "rrf"}},
        "hybrid-linear": {"retrieval": {"mode": "hybrid", "fusion": "linear", "weight": 0.7}},
        "hybrid-rerank": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "cross-encoder", "depth": 20}},
    }
    base = {"chunking": {"size": 512, "overlap": 0}}
    return {n: evaluate(RagConfig.from_dict({**base, **c}), msmarco, workspace) for n, c in configs.items()}


def test_msmarco_modes_end_to_end(msmarco_results, msmarco):
    ndcg = {n: r.summary["ndcg@10"] for n, r in msmarco_results.items()}
    for name, res in msmarco_results.items():
        assert len(res.per_query) == len(msmarco.queries), name
        assert 0.0 < ndcg[name] <= 1.0
    # BM25 reads a table without vectors and embeds nothing; the vector table is built once and shared by every
    # mode that needs vectors: documents are embedded by the first of them only
    runs = list(msmarco_results.values())
    assert runs[0].embedding.requested == 0 and sum(r.index.built for r in runs[2:]) == 0
    assert all(r.embedding.computed <= len(msmarco.queries) for r in runs[2:])
    # well-established on TREC DL: dense MiniLM and the MS MARCO cross-encoder both beat plain BM25
    assert ndcg["vector"] > ndcg["bm25"]
    assert ndcg["hybrid-rerank"] > ndcg["bm25"]
    # fusion lands at least at the weaker of its two inputs
    for fused in ("hybrid-rrf", "hybrid-linear"):
        assert ndcg[fused] >= min(ndcg["bm25"], ndcg["vector"]) - 0.01


def test_second_eval_is_served_from_the_cache(msmarco, workspace):
    cfg = RagConfig.from_dict({"chunking": {"size": 512, "overlap": 0}, "retrieval": {"mode": "vector"}})
    again = evaluate(cfg, msmarco, workspace)
    assert again.embedding.computed == 0 and not again.index.built


@pytest.mark.parametrize("size", [128, 384])
def test_chunking_dataset_span_scores(size, workspace):
    ds = load_dataset(shared_dataset("chunking"))
    cfg = RagConfig.from_dict({"chunking": {"strategy": "sentence", "size": size, "overlap": size // 8},
                               "retrieval": {"mode": "vector"}, "evaluation": {"span_k": [5, 10]}})
    res = evaluate(cfg, ds, workspace)
    pq = res.per_query
    assert len(pq) == len(ds.queries)
    for k in (5, 10):
        for m in ("span_recall", "span_precision", "span_iou"):
            assert pq[f"{m}@{k}"].between(0, 1).all()
        assert (pq[f"span_iou@{k}"] <= pq[f"span_precision@{k}"] + 1e-12).all()
    assert (pq["span_recall@10"] >= pq["span_recall@5"] - 1e-12).all()
    assert res.summary["span_recall@10"] > 0.3  # a real embedder finds a good share of the answers
    assert "chunk_ndcg@10" in pq.columns
    # recompute span recall of some queries from the retrieved chunks, character by character
    for qid in list(ds.references)[:20]:
        refs = {(r.doc_id, i) for r in ds.references[qid] for i in range(r.start, r.end)}
        got = {(h.doc_id, i) for h in res.hits[qid][:5] for i in range(h.start, h.end)}
        assert pq.loc[qid, "span_recall@5"] == pytest.approx(len(refs & got) / len(refs))
