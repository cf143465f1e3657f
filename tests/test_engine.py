"""End to end on the shipped sample corpus (needs nothing from ../shared)."""

import json

import pandas as pd
import pytest

from ragtune.config import RagConfig
from ragtune.engine import Engine
from ragtune.evaluation.run import evaluate

MODES = {
    "fts": {"retrieval": {"mode": "fts"}},
    "vector": {"retrieval": {"mode": "vector"}},
    "hybrid-rrf": {"retrieval": {"mode": "hybrid", "fusion": "rrf"}},
    "hybrid-linear": {"retrieval": {"mode": "hybrid", "fusion": "linear", "weight": 0.5}},
    "hybrid-rerank": {"retrieval": {"mode": "hybrid"}, "rerank": {"model": "cross-encoder", "depth": 10}},
}


@pytest.fixture(scope="module")
def results(sample, tmp_path_factory):
    from ragtune.workspace import Workspace

    own = Workspace(tmp_path_factory.mktemp("engine-home"))  # a cold cache, so that counts are exact
    return {name: evaluate(RagConfig.from_dict(cfg), sample, own) for name, cfg in MODES.items()}


def test_every_mode_finds_the_handbook_answers(results, sample):
    for name, res in results.items():
        assert len(res.per_query) == len(sample.queries)
        # most of the sample's questions have one relevant document among 61: random ranking scores about 0.08
        # (the sample is hard on purpose: paraphrases, near-duplicates, German; BM25 scores 0.69 and vector 0.83)
        assert res.summary["ndcg@10"] > 0.6, name
        assert res.summary["recall@100"] > 0.85, name


def test_embeddings_are_computed_once_for_all_modes_and_not_at_all_for_full_text(results, sample):
    runs = list(results.values())
    assert runs[0].index.built and runs[0].embedding.requested == 0  # fts: a table without vectors, nothing embedded
    assert runs[1].index.built and runs[1].embedding.computed == runs[1].index.chunks + len(sample.queries)
    assert sum(r.embedding.computed for r in runs[2:]) == 0  # everything else comes from the cache
    assert not any(r.index.built for r in runs[2:])  # and shares the vector table
    assert runs[0].index.table != runs[1].index.table and runs[0].index.chunks == runs[1].index.chunks


def test_hybrid_rrf_equals_an_independent_fusion_of_vector_and_bm25(sample, workspace):
    cfg = RagConfig.from_dict(MODES["hybrid-rrf"])
    depth = cfg.retrieval.candidates
    engine = Engine(cfg, workspace)
    table, _ = engine.index(sample.corpus)
    hybrid = engine.retriever(table)
    vector = Engine(cfg.with_overrides({"retrieval.mode": "vector"}), workspace).retriever(table)
    bm25 = Engine(cfg.with_overrides({"retrieval.mode": "fts"}), workspace).retriever(table)
    for q in sample.queries[:15]:
        fused = {}
        for hits in (vector.search(q.text, depth).hits, bm25.search(q.text, depth).hits):
            for h in hits:
                fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + 1.0 / (cfg.retrieval.rrf_k + h.rank)
        got = hybrid.search(q.text, depth).hits
        assert {h.chunk_id for h in got} == set(fused)
        for h in got:
            assert h.score == pytest.approx(fused[h.chunk_id], abs=1e-6)
        scores = [h.score for h in got]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("fusion", ["hybrid-rrf", "hybrid-linear"])
def test_hybrid_search_returns_exactly_what_lancedbs_hybrid_query_returns(sample, workspace, fusion):
    """ragtune runs hybrid queries through LanceDB's async API (faster); LanceDB's sync builder is the reference."""
    from ragtune import store

    cfg = RagConfig.from_dict(MODES[fusion])
    engine = Engine(cfg, workspace)
    table, _ = engine.index(sample.corpus)
    table.checkout(table.version)  # as the service serves it: a pinned version
    retriever = engine.retriever(table)
    vectors = engine.embedder.embed_queries([q.text for q in sample.queries])
    for q, vec in zip(sample.queries, vectors):
        ref = (table.search(query_type="hybrid").vector(vec).text(q.text).distance_type("cosine")
               .rerank(retriever.fusion).limit(retriever.depth(30)).select(store.COLUMNS).to_list())
        got = retriever.search(q.text, 30, vec).hits
        assert [h.chunk_id for h in got] == [r["id"] for r in ref]
        assert [h.score for h in got] == [pytest.approx(r["_relevance_score"], abs=1e-7) for r in ref]


def test_linear_fusion_with_full_vector_weight_ranks_like_vector_search(sample, workspace):
    cfg = RagConfig.from_dict({"retrieval": {"mode": "hybrid", "fusion": "linear", "weight": 1.0}})
    engine = Engine(cfg, workspace)
    table, _ = engine.index(sample.corpus)
    vector = Engine(cfg.with_overrides({"retrieval.mode": "vector"}), workspace).retriever(table)
    for q in sample.queries[:10]:
        lin = [h.chunk_id for h in engine.retriever(table).search(q.text, 5).chunks(5)]
        vec = [h.chunk_id for h in vector.search(q.text, 5).chunks(5)]
        assert lin == vec


def test_reranking_reorders_the_top_candidates_by_cross_encoder_score(sample, workspace):
    cfg = RagConfig.from_dict(MODES["hybrid-rerank"])
    engine = Engine(cfg, workspace)
    table, _ = engine.index(sample.corpus)
    plain = Engine(cfg.with_overrides({"rerank.model": None}), workspace).retriever(table)
    q = sample.queries[0].text
    before = plain.search(q, 20).hits
    after = engine.retriever(table).search(q, 20)
    head = after.hits[:10]
    assert {h.chunk_id for h in head} == {h.chunk_id for h in before[:10]}
    assert [h.chunk_id for h in after.hits[10:]] == [h.chunk_id for h in before[10:]]
    expected = engine.reranker.score(q, [h.text for h in head])
    assert [h.score for h in head] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert "rerank_ms" in after.timings_ms


def test_written_outputs_agree_with_each_other(results, sample, tmp_path):
    import pytrec_eval

    res = results["hybrid-rrf"]
    out = res.write(tmp_path / "out")
    metrics = json.loads((out / "metrics.json").read_text())
    per_query = pd.read_csv(out / "per_query.csv", index_col="query_id")
    assert metrics["config_id"] == res.config.id
    assert RagConfig.from_yaml(out / "config.yaml") == res.config
    assert len(per_query) == len(sample.queries)
    assert metrics["metrics"]["ndcg@10"] == pytest.approx(per_query["ndcg@10"].mean())
    run = {}
    for line in (out / "run.trec").read_text().splitlines():
        qid, _, doc, rank, score, tag = line.split()
        run.setdefault(qid, {})[doc] = float(score)
        assert tag == res.config.id
    evaluator = pytrec_eval.RelevanceEvaluator(sample.qrels, {"ndcg_cut.10"})
    trec = evaluator.evaluate(run)
    assert sum(v["ndcg_cut_10"] for v in trec.values()) / len(trec) == pytest.approx(metrics["metrics"]["ndcg@10"], abs=1e-9)
    assert {"latency_p50_ms", "latency_p95_ms"} <= set(metrics["metrics"])


def test_writing_is_atomic(results, tmp_path, monkeypatch):
    res = results["fts"]
    out = tmp_path / "out"
    res.write(out)
    before = (out / "metrics.json").read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("ragtune.evaluation.run.trec_run_lines", boom)
    with pytest.raises(RuntimeError):
        results["vector"].write(out)
    assert (out / "metrics.json").read_text() == before  # the old result is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind
