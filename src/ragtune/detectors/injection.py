"""Prompt-injection detection: the explainable rules of ``ragtune.guard`` and a learned classifier, one verdict.

Backends (``BACKENDS``, chosen by name):

- ``ngram`` (the default): logistic regression over hashed character and word n-grams of the normalised text, trained
  by ``python -m ragtune.detectors.training`` on public labelled sets (``sources.py``) and shipped as
  ``injection-ngram.npz`` (no pickle: the nonzero weights and the settings). Language-agnostic features, about a
  millisecond a question on one core. Chunks are scanned at indexing by its sibling ``ngram-documents``
  (``injection-ngram-documents.npz``), trained without the chat prompts (jailbreaks, hijacked questions) that make
  prose addressed to "you" look like an attack (``training.LEAVE_OUT``).
- ``hf:<path>``: any Hugging Face sequence-classification model on local disk (a fine-tuned DeBERTa or the like);
  the injection class is the label whose name says injection/jailbreak/malicious/unsafe, else label 1.
- ``rules``: the rules alone.

A text's ``score`` is the classifier's probability; a rule hit raises it to at least ``RULE_SCORE``, so that a rule
hit is always flagged (the rules' precision on outside data is in BENCHMARKS.md). It is flagged when ``score >= threshold``; the threshold is the
backend's own (the one chosen on the validation split for ``ngram``) unless the caller sets one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ragtune.errors import ConfigError
from ragtune.guard import normalise, rule_reasons

#: the score a rule hit gives at least
RULE_SCORE = 0.95
#: the shipped model file of each kind of text
MODEL_FILES = {"questions": "injection-ngram.npz", "documents": "injection-ngram-documents.npz"}
#: texts at once from which the classifier hashes n-grams in bulk (``NgramClassifier.predict_proba``)
BULK = 32


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    score: float = 0.0
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"flagged": self.flagged, "score": round(self.score, 4), "reasons": list(self.reasons)}


@lru_cache(maxsize=4)
def _vectorizers(n_features: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=n_features, alternate_sign=False,
                              dtype=np.float32)
    words = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=n_features, alternate_sign=False,
                              token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
    return chars, words


def ngram_features(texts: Sequence[str], n_features: int = 2**19):
    """Hashed char (2-5, within words) and word (1-2) n-grams of the normalised texts, each block l2-normalised."""
    from scipy.sparse import hstack

    norm = [normalise(t) for t in texts]
    chars, words = _vectorizers(n_features)
    return hstack([chars.transform(norm), words.transform(norm)], format="csr")


class NgramClassifier:
    """The shipped linear model: P(injection | text) = sigmoid(x . w + b)."""

    def __init__(self, path: Path | None = None, kind: str = "questions"):
        source = path or resources.files("ragtune.detectors") / MODEL_FILES[kind]
        with resources.as_file(source) if path is None else nullcontext(Path(path)) as p, np.load(p) as z:
            self.meta = json.loads(str(z["meta"]))
            n = int(self.meta["n_features"])
            self.weights = np.zeros(2 * n, np.float32)
            self.weights[np.unpackbits(z["nonzero"], count=2 * n).astype(bool)] = z["value"]
            self.bias = float(z["bias"])
        self.n_features, self.threshold = n, float(self.meta["threshold"])
        self.name = f"ngram@{self.meta['sha256'][:8]}"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``sigmoid(ngram_features(texts) @ weights + bias)``. From ``BULK`` texts on (a table's chunks) through
        HashingVectorizer's own hashing, in C; below it (a request's question) without building sparse matrices:
        the n-grams of each text are hashed here as HashingVectorizer hashes them (a test holds the two equal),
        several times faster for one text."""
        if not texts:
            return np.zeros(0)
        if len(texts) >= BULK:
            return 1.0 / (1.0 + np.exp(-(ngram_features(texts, self.n_features) @ self.weights + self.bias)))
        chars, words = (v.build_analyzer() for v in _vectorizers(self.n_features))
        logits = np.empty(len(texts))
        for i, text in enumerate(texts):
            norm = normalise(text)
            logits[i] = self.bias + self._block(chars(norm), 0) + self._block(words(norm), self.n_features)
        return 1.0 / (1.0 + np.exp(-logits))

    def _block(self, grams: list[str], offset: int) -> float:
        from sklearn.utils import murmurhash3_32

        counts: dict[int, int] = {}
        n = self.n_features
        for gram in grams:
            h = murmurhash3_32(gram, seed=0)
            index = (2147483647 - (n - 1)) % n if h == -2147483648 else abs(h) % n
            counts[index] = counts.get(index, 0) + 1
        if not counts:
            return 0.0
        norm = float(np.sqrt(sum(c * c for c in counts.values())))
        return float(sum(self.weights[offset + j] * c for j, c in counts.items())) / norm


class HFClassifier:
    """A Hugging Face sequence-classification model from a local folder (loaded offline)."""

    def __init__(self, path: str, threshold: float = 0.5):
        from ragtune.detectors.hf import LocalClassifier

        self.model = LocalClassifier(path, "hf")
        found = self.model.label(r"inject|jailbreak|malicious|unsafe|attack")
        self.positive = 1 if found is None else found
        self.threshold, self.name = threshold, self.model.name

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.probabilities(self.positive, list(texts))


class RulesOnly:
    name, threshold = "rules", 0.5

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros(len(texts))


BACKENDS = {"ngram": lambda arg: NgramClassifier(Path(arg) if arg else None),
            "ngram-documents": lambda arg: NgramClassifier(Path(arg) if arg else None, "documents"),
            "hf": lambda arg: HFClassifier(arg),
            "rules": lambda arg: RulesOnly()}


class InjectionDetector:
    def __init__(self, backend: str = "ngram", threshold: float | None = None):
        name, _, arg = backend.partition(":")
        if name not in BACKENDS:
            raise ConfigError(f"injection detector {backend!r}: expected one of {', '.join(BACKENDS)} "
                              "(hf:<folder> for a local Hugging Face model)")
        self.model = BACKENDS[name](arg)
        self.threshold = self.model.threshold if threshold is None else float(threshold)
        self.name = self.model.name

    def check_many(self, texts: Sequence[str]) -> list[Verdict]:
        probs = self.model.predict_proba(list(texts))
        out = []
        for text, p in zip(texts, probs):
            reasons = rule_reasons(text)
            score = max(float(p), RULE_SCORE) if reasons else float(p)
            flagged = score >= self.threshold
            if flagged and not reasons:
                reasons = ("classifier",)
            out.append(Verdict(flagged, score, tuple(reasons)))
        return out

    def check(self, text: str) -> Verdict:
        return self.check_many([text])[0]


@lru_cache(maxsize=4)
def detector(backend: str = "ngram", threshold: float | None = None) -> InjectionDetector:
    """A shared detector per (backend, threshold): the model loads once per process."""
    return InjectionDetector(backend, threshold)


def scan(texts: Sequence[str], backend: str = "ngram-documents", batch_size: int = 512) -> list[tuple[float, str]]:
    """(score, reasons) per text, reasons "" when not flagged: what chunk tables store for every chunk they hold."""
    det, out = detector(backend), []
    for i in range(0, len(texts), batch_size):
        out += [(v.score, ", ".join(v.reasons) if v.flagged else "") for v in det.check_many(texts[i:i + batch_size])]
    return out


def detect_injection(text: str) -> Verdict:
    """The default detector's verdict on one text (rules + the shipped classifier)."""
    return detector().check(text)
