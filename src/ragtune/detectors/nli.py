"""Claim verification by a natural-language-inference model from a local folder (``hf-nli:<folder>``).

Any Hugging Face sequence-classification model trained for NLI or factual consistency (a DeBERTa fine-tuned on
MNLI, a hallucination evaluation model, ...): the premise is each retrieved chunk, the hypothesis one claim, and the
claim's probability of being unsupported is 1 - P(entailment) of its best-supporting chunk. The entailment class is
the label whose name says entail/consistent/supported; a model with two labels and none so named is read as (not
supported, supported).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtune.errors import ConfigError
from ragtune.models.cache import fingerprint


class NLIVerifier:
    #: a chunk longer than this is read in windows of whole sentences (the model reads 512 tokens with the claim)
    window_words = 300

    def __init__(self, path: str):
        from ragtune.detectors.hf import LocalClassifier

        self.model = LocalClassifier(path, "hf-nli")
        found = self.model.label(r"entail|consistent|support")
        if found is None and len(self.model.labels) != 2:
            raise ConfigError(f"verifier hf-nli:{path}: no entailment label among "
                              f"{sorted(self.model.labels.values())}")
        self.entailment = 1 if found is None else found
        self.name = self.model.name
        self.cache_key = f"hf-nli@{fingerprint(Path(path).expanduser(), 'hf-nli')}"

    def entailed(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """P(entailment) of each (premise, hypothesis) pair; the premise is truncated first when too long."""
        return self.model.probabilities(self.entailment, premises, hypotheses)


class CachedVerifier:
    """A verifier whose verdicts are kept by (model, claim hash, premise hash) in the workspace's pair cache: a
    rerun, or another configuration that gives the same chunks to the same answer, reads them back instead of
    running the model again. ``requested`` and ``computed`` count pairs."""

    def __init__(self, verifier, cache):
        self.verifier, self.cache, self.requested, self.computed = verifier, cache, 0, 0

    def __getattr__(self, name: str):  # name, blend, window_words: the wrapped verifier's
        return getattr(self.verifier, name)

    def entailed(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        scores, _, computed = self.cache.scores(self.verifier.cache_key, hypotheses, premises,
                                                lambda claims, chunks: self.verifier.entailed(chunks, claims))
        self.requested, self.computed = self.requested + len(premises), self.computed + computed
        return scores


#: the verifier that ships with ragtune (``ragtune.detectors.entailment``)
SHIPPED = "minilm-nli"


def verifier_folder(spec: str) -> str | None:
    """The folder an ``hf-nli:<folder>`` spec names, None for the shipped verifier; a ConfigError for anything else."""
    if spec == SHIPPED:
        return None
    kind, _, folder = spec.partition(":")
    if kind != "hf-nli" or not folder:
        raise ConfigError(f"verifier {spec!r}: expected {SHIPPED} (the shipped NLI adapter) or hf-nli:<folder of a "
                          f"local Hugging Face NLI model>")
    return folder


def make_verifier(spec: str | None, cache=None):
    """None, or the verifier a spec names (``minilm-nli``, ``hf-nli:<folder>``), its verdicts kept in ``cache`` (a
    ``PairScoreCache``) when one is given."""
    if not spec:
        return None
    folder = verifier_folder(spec)
    if folder is None:
        from ragtune.detectors.entailment import MiniLMVerifier

        verifier = MiniLMVerifier()
    else:
        verifier = NLIVerifier(folder)
    return verifier if cache is None else CachedVerifier(verifier, cache)
