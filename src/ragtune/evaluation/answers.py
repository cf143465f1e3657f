"""Answer quality per query: faithfulness, hallucination, answer relevance, context use and precision, correctness.

Reference-free and offline: an answer's sentences are its claims, less what claims nothing (a preamble like "Based
on the passages," is cut off; list headers ending in ":", closing lines like "Let me know if..." and statements about
the passages themselves, refusals included, are not claims). A claim is split at its clause boundaries (", and",
"; ", " but ", ", which", ...) and each clause must be supported: a chunk says the same thing, scored as the mean
of (a) the cosine between the clause and the chunk's closest sentence (the configured embedder) and (b) the share
of the clause's content words (stemmed, stop words dropped) found in the chunk, and every number and every name (a
capitalised word inside a sentence) in it appears in the context or the question. Number words count as numbers,
a common unit conversion of a context figure (km/mi, kg/lb, m/ft, cm/in, l/gal, C/F) counts as that figure, and an
acronym counts as its spelled-out name: changed figures and swapped names are the commonest invented facts.
A claim's ``score`` is a probability-like number, 0.5 at the support threshold, rising as support falls, at least
0.9 when a fact is missing from the context; an answer's ``hallucination_score`` is its worst claim's.
An NLI verifier (``evaluation.verifier``: the shipped ``minilm-nli``, blended with the heuristic, or a model of
the user's) reads each chunk with each claim and decides support with it or in its place. An optional LLM judge
gives its own faithfulness and relevance beside these (``ragtune.evaluation.judge``).

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
import re

from ragtune.text import acronyms, content_words, name_runs, numbers, split_sentences, token_f1, words
from ragtune.types import Answer, Hit

#: A claim is supported from this mean of (cosine, content-word coverage) on: midway between an unrelated sentence
#: (both low, about 0.2-0.3) and a restatement (both high, 0.8 and above).
SUPPORT_THRESHOLD = 0.6
NAN = math.nan
#: higher is better; ``hallucination`` (a rate, lower is better) is reported beside them


#: how fast a claim's probability of being unsupported rises as its support falls below the threshold
SUPPORT_SCALE = 0.05
#: the probability given to a claim with a number or a name that the context does not hold
FACT_MISSING = 0.9

_PREAMBLE = re.compile(r"^(?:based (?:solely |only )?(?:on|upon)|according to|from|given|using|in) (?:the |these |this )?"
                       r"(?:given |provided |above |available |retrieved |following |supplied )?(?:passages?|context|"
                       r"information|documents?|sources?|text|excerpts?|search results?|articles?)\b[^,:]{0,60}[,:]\s*",
                       re.I)
_ABOUT_PASSAGES = re.compile(r"^(?:the |these |this )?(?:given |provided )?(?:passages?|context|documents?|sources?|"
                             r"text|excerpts?|articles?) (?:\w+ ){0,2}(?:states?|says?|mentions?|notes?|explains?|"
                             r"indicates?|suggests?|describes?|reports?) (?:that )?", re.I)
_NON_CLAIM = re.compile(
    r":$|^(?:i hope|hope this|let me know|please let me know|feel free|if you have any|is there anything|"
    r"i'?m happy to|happy to help|here (?:is|are) (?:the |a |an |my )?(?:answer|summary|response|information))|"
    r"\b(?:unable to|cannot|can'?t|could not|couldn'?t|not able to|impossible to) (?:\w+ ){0,2}(?:answer|determine|"
    r"find|provide|say|tell|confirm|identify)\b|\b(?:do(?:es)? not|don'?t|doesn'?t|did not) (?:\w+ ){0,2}(?:contain|"
    r"provide|mention|include|specify|say|state|give|address|discuss)\b.{0,60}\b(?:information|details?|answer|"
    r"mention|data)\b|\b(?:no|not enough|insufficient) (?:specific |relevant |further )?(?:information|mention|"
    r"details?|data) (?:is |was )?(?:given|provided|available|about|on|regarding|in)\b|\bis not (?:mentioned|"
    r"specified|stated|provided|given|included) in the (?:passages?|context|documents?|text)", re.I)
_CLAUSE = re.compile(r"(?:,|;)\s+(?:and|but|while|whereas|which|although|though)\s+|;\s+|\s+but\s+|\s+whereas\s+")


def claims_of(text: str) -> list[str]:
    """The checkable claims of an answer: its sentences without preambles, headers, closings and statements about
    the passages (a refusal claims nothing about the world)."""
    out = []
    for sentence in split_sentences(text):
        sentence = _PREAMBLE.sub("", sentence).strip()
        sentence = _ABOUT_PASSAGES.sub("", sentence).strip()
        if len(content_words(sentence)) < 2 or _NON_CLAIM.search(sentence):
            continue
        out.append(sentence[0].upper() + sentence[1:])
    return out


def clauses(claim: str) -> list[str]:
    """A claim cut at clause boundaries; a piece of fewer than three content words stays with its neighbour."""
    merged: list[str] = []
    for part in (p.strip() for p in _CLAUSE.split(claim) if p and p.strip()):
        if merged and (len(content_words(part)) < 3 or len(content_words(merged[-1])) < 3):
            merged[-1] += " " + part
        else:
            merged.append(part)
    return merged or [claim]
#: unit conversions an answer may make of a context figure, each allowed only when the claim names a unit of it
_CONVERSIONS = [
    ((1.609344,), re.compile(r"\b(?:km|kilomet\w*|miles?|mi)\b", re.I)),
    ((2.20462,), re.compile(r"\b(?:kg|kilo\w*|lbs?|pounds?)\b", re.I)),
    ((3.28084,), re.compile(r"\b(?:ft|feet|foot|met(?:er|re)s?|m)\b", re.I)),
    ((2.54,), re.compile(r"\b(?:cm|centimet\w*|inch(?:es)?|in\.)", re.I)),
    ((3.78541,), re.compile(r"\b(?:lit(?:er|re)s?|l|gallons?|gal)\b", re.I)),
]
_TEMPERATURE = re.compile(r"°|\bdegrees?\b|\bfahrenheit\b|\bcelsius\b", re.I)
_UNIT_NAMES = {"fahrenheit", "celsius", "kelvin"}


def _converted(value: float, decimals: int, c: float, claim: str) -> bool:
    """``value`` (written with ``decimals`` places) is ``c`` in another unit the claim names, rounded: within half
    its last place and 3%."""
    targets = [t for factors, units in _CONVERSIONS if units.search(claim) for f in factors for t in (c * f, c / f)]
    if _TEMPERATURE.search(claim):
        targets += [c * 9 / 5 + 32, (c - 32) * 5 / 9]
    return any(abs(value - t) <= 0.5 * 10 ** -decimals and abs(value - t) <= 0.03 * abs(t) for t in targets)


def _number_ok(n: str, context_numbers: set[str], claim: str) -> bool:
    if n in context_numbers:
        return True
    if not re.fullmatch(r"\d+(?:[.,]\d+)?", n):
        return False
    value, decimals = float(n.replace(",", ".")), len(re.split(r"[.,]", n)[1]) if re.search(r"[.,]", n) else 0
    known = [float(c.replace(",", ".")) for c in context_numbers if re.fullmatch(r"\d+(?:[.,]\d+)?", c)]
    return any(_converted(value, decimals, c, claim) for c in known if c)


def facts_missing(claim: str, context: str, question: str = "") -> list[str]:
    """Numbers and names of ``claim`` that neither the context nor the question holds."""
    allowed = context + " " + question
    known_numbers, known_words, known_acronyms = numbers(allowed), set(words(allowed)), acronyms(allowed)
    missing = [n for n in sorted(numbers(claim)) if not _number_ok(n, known_numbers, claim)]
    for run in name_runs(claim):
        initials = "".join(w[0] for w in run)
        if len(run) > 1 and initials in known_acronyms:
            continue
        missing += [w for w in run if w not in known_words and w not in known_acronyms and w not in _UNIT_NAMES]
    return missing


#: a chunk longer than this is read by a verifier in windows of whole sentences of at most this many words, unless
#: the verifier names its own ``window_words`` (what its model reads beside a claim)
WINDOW_WORDS = 150


def windows(text: str, limit: int = WINDOW_WORDS) -> list[str]:
    """``text`` in windows of consecutive sentences of at most ``limit`` words, each sharing its first sentence with
    the previous window's last (a sentence longer than ``limit`` is a window of its own)."""
    sentences = split_sentences(text)
    if len(text.split()) <= limit or len(sentences) < 2:
        return [text]
    out, start = [], 0
    while start < len(sentences):
        end, size = start, 0
        while end < len(sentences) and (end == start or size + len(sentences[end].split()) <= limit):
            size += len(sentences[end].split())
            end += 1
        out.append(" ".join(sentences[start:end]))
        if end == len(sentences):
            break
        start = max(end - 1, start + 1)
    return out


@dataclass(frozen=True)
class Support:
    claim: str
    score: float  # support, 0-1
    chunk_id: str | None  # the chunk that supports it best
    facts_ok: bool  # its numbers and names all appear in the context or the question
    missing: tuple[str, ...] = ()
    entailed: float | None = None  # P(entailment) from an NLI verifier, when one is used
    semantic: float = 1.0  # the weakest clause's cosine with the closest sentence of its best chunk
    lexical: float = 1.0  # and the share of its content words found there
    blended: bool = False  # the verifier's verdict is blended with the similarity heuristic's (the shipped one)

    @property
    def supported(self) -> bool:
        return self.probability < 0.5

    @property
    def probability(self) -> float:
        """Probability-like: how likely the claim is unsupported. The similarity heuristic's logistic of its support;
        a verifier's 1 - P(entailment) in its place, or the geometric mean of the two for a blending verifier."""
        p = 1.0 / (1.0 + math.exp((self.score - SUPPORT_THRESHOLD) / SUPPORT_SCALE))
        if self.entailed is not None:
            p = math.sqrt(p * (1.0 - self.entailed)) if self.blended else 1.0 - self.entailed
        return p if self.facts_ok else max(p, FACT_MISSING)

    def as_dict(self) -> dict:
        return {"claim": self.claim, "supported": self.supported, "score": round(self.probability, 4),
                "support": round(self.score, 4), "chunk_id": self.chunk_id, "missing": list(self.missing),
                **({"entailed": round(self.entailed, 4)} if self.entailed is not None else {})}


#: answers whose verifier pairs are read in one call by ``ragtune judge`` and ``ragtune eval``: full batches for
#: every core, few enough that scores come back as the answers do
ANSWER_BLOCK = 32


class KnownVerdicts:
    """A verifier whose verdicts on the pairs given up front are computed in one call and read back; other pairs are
    passed to the verifier it wraps."""

    def __init__(self, verifier, pairs: Sequence[tuple[str, str]]):
        self.verifier, self.known = verifier, {}
        self._compute(pairs)

    def __getattr__(self, name: str):  # name, blend, window_words: the wrapped verifier's
        return getattr(self.verifier, name)

    def _compute(self, pairs: Sequence[tuple[str, str]]) -> None:
        if pairs:
            scores = self.verifier.entailed([p for p, _ in pairs], [h for _, h in pairs])
            self.known.update(zip(pairs, map(float, scores)))

    def entailed(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        pairs = list(zip(premises, hypotheses))
        self._compute([pair for pair in dict.fromkeys(pairs) if pair not in self.known])
        return np.array([self.known[pair] for pair in pairs], dtype=np.float32)


class AnswerScorer:
    def __init__(self, embedder, verifier=None):
        """``verifier``: an NLI model (``ragtune.detectors.nli``) that decides support in place of the similarity
        heuristic; the number and name check stays."""
        self.embedder, self.verifier = embedder, verifier

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_documents(texts) if texts else np.zeros((0, 1), np.float32)

    def verifier_pairs(self, claims: Sequence[str], hits: Sequence[Hit]) -> tuple[list[str], list[str]]:
        """The (premise, claim) pairs the verifier reads for ``claims``: each chunk with the claim on its own, in
        windows of whole sentences where longer than the model reads, as WiCE's authors score claims (the chunks
        joined are longer than such a model reads, and it would see the first ones only)."""
        limit = getattr(self.verifier, "window_words", WINDOW_WORDS)
        texts = [w for h in hits for w in windows(h.text, limit)] or [""]
        return [t for _ in claims for t in texts], [c for c in claims for _ in texts]

    def support(self, claims: Sequence[str], hits: Sequence[Hit], question: str = "",
                verifier=None) -> list[Support]:
        """How well the chunks in ``hits`` support each claim: its weakest clause decides. ``verifier``: in place of
        the scorer's own (``judge_many``'s, which knows its pairs' verdicts already)."""
        verifier = verifier or self.verifier
        if not claims:
            return []
        context = " ".join(h.text for h in hits)
        pieces = [(i, c) for i, claim in enumerate(claims) for c in clauses(claim)]
        sentences = [(s, j) for j, h in enumerate(hits) for s in split_sentences(h.text)]
        piece_vecs = self._vectors([c for _, c in pieces])
        sent_vecs = self._vectors([s for s, _ in sentences])
        cos = piece_vecs @ sent_vecs.T if len(sentences) else np.zeros((len(pieces), 0))
        rows_of = [[k for k, (_, jj) in enumerate(sentences) if jj == j] for j in range(len(hits))]
        # a clause's words must come from one place: two neighbouring sentences of a chunk, not the whole chunk
        sentence_words = [set(content_words(s)) for s, _ in sentences]
        neighbours = [[sentence_words[k] | (sentence_words[k + 1] if k + 1 in rows else set()) for k in rows]
                      or [set()] for rows in rows_of]
        best = [(1.0, None, 1.0, 1.0)] * len(claims)
        for p, (i, piece) in enumerate(pieces):
            piece_words = content_words(piece)
            score, chunk, parts = 0.0, None, (0.0, 0.0)
            for j, h in enumerate(hits):
                semantic = float(cos[p, rows_of[j]].max()) if rows_of[j] else 0.0
                lexical = max(sum(w in win for w in piece_words) / len(piece_words) for win in neighbours[j]) \
                    if piece_words else 1.0
                if (semantic + lexical) / 2 > score:
                    score, chunk, parts = (semantic + lexical) / 2, h.chunk_id, (semantic, lexical)
            if score < best[i][0]:
                best[i] = (score, chunk, *parts)
        entailed = [None] * len(claims)
        if verifier is not None:  # the best-supporting window of any chunk decides
            p = np.asarray(verifier.entailed(*self.verifier_pairs(claims, hits)))
            entailed = [float(e) for e in p.reshape(len(claims), -1).max(axis=1)]
        out = []
        for i, claim in enumerate(claims):
            missing = facts_missing(claim, context, question)
            score, chunk, semantic, lexical = best[i]
            out.append(Support(claim, score, chunk, not missing, tuple(missing), entailed[i], semantic, lexical,
                               getattr(verifier, "blend", False)))
        return out

    def judge(self, question: str, answer: str, contexts: Sequence[str], threshold: float = 0.5) -> dict:
        """One answer's verdict: ``hallucinated`` (``score`` >= ``threshold``; at 0.5, any claim unsupported),
        ``score`` (the worst claim's probability), ``faithfulness`` (supported claims / claims; None when there is no
        claim, as in a refusal) and a verdict per claim."""
        return self.judge_many([(question, answer, contexts)], threshold)[0]

    def judge_many(self, rows: Sequence[tuple[str, str, Sequence[str]]], threshold: float = 0.5) -> list[dict]:
        """``judge`` of each (question, answer, contexts), the verifier reading all their pairs in one call (its
        batches full and side by side, not a few pairs per answer)."""
        items = [(question, claims_of(answer), [Hit(f"context-{i + 1}", f"context-{i + 1}", 1.0, i + 1, t, 0, len(t))
                                                 for i, t in enumerate(contexts)])
                 for question, answer, contexts in rows]
        verifier = self.known_verdicts([(claims, hits) for _, claims, hits in items])
        return [self.verdict(self.support(claims, hits, question, verifier), threshold)
                for question, claims, hits in items]

    def known_verdicts(self, items: Sequence[tuple[Sequence[str], Sequence[Hit]]]):
        """The verifier with the verdicts on every (claims, hits) item's pairs computed in one call (``KnownVerdicts``:
        full batches side by side, each distinct pair once); None without a verifier."""
        if self.verifier is None:
            return None
        pairs = dict.fromkeys(pair for claims, hits in items if claims
                              for pair in zip(*self.verifier_pairs(claims, hits)))
        return KnownVerdicts(self.verifier, list(pairs))

    @staticmethod
    def checked(answer: Answer) -> bool:
        """Whether ``score`` checks the answer's claims: not a degraded answer nor the generator's no-answer."""
        return not answer.degraded and answer.text != NO_ANSWER

    @staticmethod
    def verdict(supports: Sequence[Support], threshold: float = 0.5) -> dict:
        """``judge``'s verdict from the claims' supports."""
        score = float(max((s.probability for s in supports), default=0.0))
        return {"hallucinated": bool(score >= threshold), "score": round(score, 4),
                "faithfulness": sum(s.supported for s in supports) / len(supports) if supports else None,
                "claims": [s.as_dict() for s in supports]}

    def score(self, question: str, answer: Answer, hits: Sequence[Hit], relevant: Mapping[str, int] | None = None,
              reference: str | None = None, query_vector: np.ndarray | None = None, verifier=None) -> dict[str, float]:
        """Per-query scores; ``hits`` are the chunks the generator was given, ``relevant`` the query's judgments.
        ``verifier``: in place of the scorer's own (``known_verdicts`` of many answers)."""
        row = {"faithfulness": NAN, "hallucination": NAN, "answer_relevance": NAN, "context_utilization": NAN,
               "context_precision": NAN, "claims": 0, "unsupported_claims": 0}
        if relevant:
            row["context_precision"] = float(np.mean([relevant.get(h.doc_id, 0) > 0 for h in hits])) if hits else 0.0
        if reference is not None and not answer.degraded:
            row["answer_f1"] = token_f1(answer.text, reference)
            row["answer_similarity"] = float(np.dot(*self._vectors([_plain(answer.text), reference])))
        if not self.checked(answer):
            return row
        claims = claims_of(answer.text)
        if not claims:  # nothing but statements about the passages: a refusal claims nothing to check
            row["claims"] = 0
            row["hallucination_score"] = 0.0
            return row
        supports = self.support(claims, hits, question, verifier)
        unsupported = sum(not s.supported for s in supports)
        q = query_vector if query_vector is not None else self.embedder.embed_queries([question])[0]
        used = {s.chunk_id for s in supports if s.supported}
        row.update({
            "faithfulness": 1.0 - unsupported / len(claims) if claims else NAN,
            "hallucination": float(unsupported > 0) if claims else NAN,
            "answer_relevance": float(self._vectors([_plain(answer.text)])[0] @ q),
            "context_utilization": len(used) / len(hits) if hits else NAN,
            "claims": len(claims), "unsupported_claims": unsupported,
            "hallucination_score": max(s.probability for s in supports),
        })
        return row


def _plain(text: str) -> str:
    return " ".join(split_sentences(text))
