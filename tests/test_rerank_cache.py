"""Re-ranking paid once per pair: cross-encoder scores kept by (model, query hash, passage hash) with the model time
they took, exact against the model, shared by the configurations of a sweep, and not used where the model itself
must run (latency trials)."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.cache import PairScoreCache, text_hash
from ragtune.config import RagConfig, RerankConfig
from ragtune.engine import Engine
from ragtune.evaluation.latency import time_configs
from ragtune.evaluation.run import evaluate
from ragtune.rerank import CachedReranker, make_reranker
from ragtune.workspace import Workspace

QUESTION = "How long is the probation period?"


@pytest.fixture(scope="module")
def model():
    return make_reranker(RerankConfig(model="cross-encoder", depth=10))


def test_cached_scores_equal_the_model_and_each_pair_is_scored_once(model, sample, tmp_path):
    texts = [d.text[:400] for d in sample.documents[:8]]
    texts = texts + texts[:3]  # repeats within one call are scored once too
    cache = PairScoreCache(tmp_path / "rerank.sqlite")
    cached = CachedReranker(model, cache)
    first = cached.score(QUESTION, texts)
    assert np.array_equal(first, model.score(QUESTION, texts))  # exact: the CPU model scores one pair per call
    assert (cached.stats.requested, cached.stats.computed, cached.saved_ms) == (11, 8, 0.0)
    again = CachedReranker(model, PairScoreCache(tmp_path / "rerank.sqlite"))  # another process, the same file
    assert np.array_equal(again.score(QUESTION, texts), first) and again.stats.computed == 0
    recorded = cache.get_many(model.model_id, text_hash(QUESTION), [text_hash(t) for t in texts])
    assert len(recorded) == 8 and all(ms > 0 for _, ms in recorded.values())
    # what a cached call reports as saved is exactly the model time recorded for the pairs it served
    assert again.saved_ms == pytest.approx(sum(recorded[text_hash(t)][1] for t in texts))
    assert again.rerank(QUESTION, [], 10) == [] and again.saved_ms == 0.0  # nothing scored, nothing saved
    other = CachedReranker(model, cache).score("Can I work from abroad?", texts[:2])  # another query is other pairs
    assert np.array_equal(other, model.score("Can I work from abroad?", texts[:2]))


def test_pairs_scored_side_by_side_equal_one_pair_at_a_time_through_the_graph(model, sample):
    """The int8 model runs one pair per call, several calls at once (one core each): the scores are exactly those of
    the model's graph run here, one pair after another, on the tokenizer's own encoding of each pair."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    onnx = model.reranker if isinstance(model, CachedReranker) else model
    assert onnx.one_per_call and onnx.side_by_side >= 1
    texts = [d.text for d in sample.documents[:12]]  # long enough that the tokenizer cuts some
    session = ort.InferenceSession(str(onnx.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(onnx.model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    names = {i.name for i in session.get_inputs()}
    expected = []
    for text in texts:
        enc = tokenizer.encode(QUESTION, text)
        feed = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        expected.append(session.run(None, {k: np.array([v], np.int64) for k, v in feed.items() if k in names})[0][0, 0])
    onnx.side_by_side = 2  # two calls at once, whatever this machine's cores
    assert np.array_equal(onnx.score(QUESTION, texts), np.array(expected, np.float32))


def test_a_sweep_over_depths_and_first_stages_scores_each_distinct_pair_once(sample, tmp_path):
    small = sample.subset([q.id for q in sample.judged()[:8]])
    ws = Workspace(tmp_path / "home")
    configs = [RagConfig.from_dict({"retrieval": {"mode": mode}, "rerank": {"model": "cross-encoder", "depth": d}})
               for mode in ("vector", "hybrid") for d in (5, 10, 20)]
    results = [evaluate(c, small, ws) for c in configs]
    distinct = set()  # the pairs each configuration needs, computed here from its first stage alone
    for c in configs:
        plain = Engine(c.model_copy(update={"rerank": RerankConfig()}), ws)
        retriever = plain.retriever(plain.index(small.corpus)[0])
        for q in small.judged():
            distinct |= {(q.text, h.text) for h in retriever.search(q.text, c.rerank.depth).hits[: c.rerank.depth]}
    scored = sum(r.extra["rerank"]["scored_by_model"] for r in results)
    assert sum(r.extra["rerank"]["pairs"] for r in results) > 2 * len(distinct)  # the sweep asks for many repeats
    assert len(distinct) <= scored <= 1.1 * len(distinct)
    uncached = [evaluate(c, small, Workspace(tmp_path / "cold")) for c in configs[:1] + configs[-1:]]
    for cold, warm in zip(uncached, results[:1] + results[-1:]):  # the same rankings as without the cache
        assert cold.run == warm.run and np.allclose(cold.per_query["ndcg@10"], warm.per_query["ndcg@10"])


def test_latency_trials_run_the_model_itself(sample, tmp_path):
    config = RagConfig.from_dict({"retrieval": {"mode": "fts"}, "rerank": {"model": "cross-encoder", "depth": 5}})
    ws = Workspace(tmp_path / "home")
    assert not isinstance(Engine(config, ws, cache_pairs=False).reranker, CachedReranker)
    assert isinstance(Engine(config, ws).reranker, CachedReranker)
    time_configs([config], sample.subset([q.id for q in sample.judged()[:2]]), ws, rounds=1)
    assert ws.pair_scores.count() == 0  # the trial timed the model on every pair and kept nothing
