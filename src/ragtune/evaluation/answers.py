"""Answer quality per query: faithfulness, hallucination, answer relevance, context use and precision, correctness.

Reference-free and offline: an answer's sentences are its claims; a claim is supported when a retrieved chunk says
the same thing, scored as the mean of (a) the cosine between the claim and the chunk's closest sentence (the
configured embedder) and (b) the share of the claim's content words (stemmed, stop words dropped) found in the
chunk, and when every number and every name (a capitalised word inside a sentence) in the claim appears in the
context: changed figures and swapped names are the commonest invented facts.
An optional LLM judge gives its own faithfulness and relevance beside these (``ragtune.evaluation.judge``).

- faithfulness: supported claims / claims; hallucination: 1 when any claim is unsupported (its mean is the rate)
- answer_relevance: cosine between the question and the answer
- context_utilization: share of the chunks given to the generator that support a claim
- context_precision: share of those chunks from documents judged relevant (queries with judgments only)
- answer_f1 and answer_similarity against a reference answer, where one exists

A degraded answer (the generator failed) or a refusal has no claims to check: its scores are left unmeasured
(NaN) and counted, never averaged in as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.generation import NO_ANSWER
from ragtune.text import content_words, names, numbers, split_sentences, token_f1, words
from ragtune.types import Answer, Hit

#: A claim is supported from this mean of (cosine, content-word coverage) on: midway between an unrelated sentence
#: (both low, about 0.2-0.3) and a restatement (both high, 0.8 and above).
SUPPORT_THRESHOLD = 0.6
NAN = math.nan
#: higher is better; ``hallucination`` (a rate, lower is better) is reported beside them
ANSWER_METRICS = ("faithfulness", "answer_relevance")


@dataclass(frozen=True)
class Support:
    claim: str
    score: float
    chunk_id: str | None  # the chunk that supports it best
    facts_ok: bool  # its numbers and names all appear in the context

    @property
    def supported(self) -> bool:
        return self.facts_ok and self.score >= SUPPORT_THRESHOLD


class AnswerScorer:
    def __init__(self, embedder, threshold: float = SUPPORT_THRESHOLD):
        self.embedder, self.threshold = embedder, threshold

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_documents(texts) if texts else np.zeros((0, 1), np.float32)

    def support(self, claims: Sequence[str], hits: Sequence[Hit]) -> list[Support]:
        """How well the chunks in ``hits`` support each claim."""
        if not claims:
            return []
        context = " ".join(h.text for h in hits)
        context_numbers, context_words = numbers(context), set(words(context))
        sentences = [(s, j) for j, h in enumerate(hits) for s in split_sentences(h.text)]
        claim_vecs = self._vectors(list(claims))
        sent_vecs = self._vectors([s for s, _ in sentences])
        chunk_words = [set(content_words(h.text)) for h in hits]
        cos = claim_vecs @ sent_vecs.T if len(sentences) else np.zeros((len(claims), 0))
        out = []
        for i, claim in enumerate(claims):
            claim_words = content_words(claim)
            best, best_chunk = 0.0, None
            for j, h in enumerate(hits):
                rows = [k for k, (_, jj) in enumerate(sentences) if jj == j]
                semantic = float(cos[i, rows].max()) if rows else 0.0
                lexical = sum(w in chunk_words[j] for w in claim_words) / len(claim_words) if claim_words else 1.0
                score = (semantic + lexical) / 2
                if score > best:
                    best, best_chunk = score, h.chunk_id
            facts_ok = numbers(claim) <= context_numbers and names(claim) <= context_words
            out.append(Support(claim, best, best_chunk, facts_ok))
        return out

    def score(self, question: str, answer: Answer, hits: Sequence[Hit], relevant: Mapping[str, int] | None = None,
              reference: str | None = None, query_vector: np.ndarray | None = None) -> dict[str, float]:
        """Per-query scores; ``hits`` are the chunks the generator was given, ``relevant`` the query's judgments."""
        row = {"faithfulness": NAN, "hallucination": NAN, "answer_relevance": NAN, "context_utilization": NAN,
               "context_precision": NAN, "claims": 0, "unsupported_claims": 0}
        if relevant:
            row["context_precision"] = float(np.mean([relevant.get(h.doc_id, 0) > 0 for h in hits])) if hits else 0.0
        if reference is not None and not answer.degraded:
            row["answer_f1"] = token_f1(answer.text, reference)
            row["answer_similarity"] = float(np.dot(*self._vectors([_plain(answer.text), reference])))
        if answer.degraded or answer.text == NO_ANSWER:
            return row
        claims = split_sentences(answer.text)
        supports = self.support(claims, hits)
        unsupported = sum(not s.supported for s in supports)
        q = query_vector if query_vector is not None else self.embedder.embed_queries([question])[0]
        used = {s.chunk_id for s in supports if s.supported}
        row.update({
            "faithfulness": 1.0 - unsupported / len(claims) if claims else NAN,
            "hallucination": float(unsupported > 0) if claims else NAN,
            "answer_relevance": float(self._vectors([_plain(answer.text)])[0] @ q),
            "context_utilization": len(used) / len(hits) if hits else NAN,
            "claims": len(claims), "unsupported_claims": unsupported,
        })
        return row


def _plain(text: str) -> str:
    return " ".join(split_sentences(text))
