"""Claim verification by a natural-language-inference model from a local folder (``hf-nli:<folder>``).

Any Hugging Face sequence-classification model trained for NLI or factual consistency (a DeBERTa fine-tuned on
MNLI, a hallucination evaluation model, ...): the premise is the retrieved context, the hypothesis one claim, and the
claim's probability of being unsupported is 1 - P(entailment). The entailment class is the label whose name says
entail/consistent/supported; a model with two labels and none so named is read as (not supported, supported).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtune.errors import ConfigError


class NLIVerifier:
    def __init__(self, path: str, max_length: int = 512, batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"verifier hf-nli:{path}: no such folder (a local Hugging Face model is expected)")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
        labels = {int(i): str(n) for i, n in self.model.config.id2label.items()}
        hits = [i for i, n in labels.items() if re.search(r"entail|consistent|support", n, re.I)
                and not re.match(r"(?:not|non|in|un)", n, re.I)]
        if hits:
            self.entailment = hits[0]
        elif len(labels) == 2:
            self.entailment = 1
        else:
            raise ConfigError(f"verifier hf-nli:{path}: no entailment label among {sorted(labels.values())}")
        self.max_length, self.batch_size, self.name = max_length, batch_size, f"hf-nli:{folder.name}"

    def entailed(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """P(entailment) of each (premise, hypothesis) pair; the premise is truncated first when too long."""
        import torch

        out = []
        for i in range(0, len(premises), self.batch_size):
            batch = self.tokenizer(list(premises[i:i + self.batch_size]), list(hypotheses[i:i + self.batch_size]),
                                   padding=True, truncation="only_first", max_length=self.max_length,
                                   return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            out.append(torch.softmax(logits, dim=-1)[:, self.entailment].numpy())
        return np.concatenate(out) if out else np.zeros(0)


def make_verifier(spec: str | None):
    """None, or the verifier a spec names (``hf-nli:<folder>``)."""
    if not spec:
        return None
    kind, _, arg = spec.partition(":")
    if kind != "hf-nli" or not arg:
        raise ConfigError(f"verifier {spec!r}: expected hf-nli:<folder of a local Hugging Face NLI model>")
    return NLIVerifier(arg)
