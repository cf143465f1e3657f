"""A Hugging Face sequence-classification model from a local folder, loaded offline: the one loading path of the
detector backends that take users' own models (``hf:<folder>`` for injection, ``hf-nli:<folder>`` for claims)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtune.errors import ConfigError


class LocalClassifier:
    def __init__(self, path: str, spec: str, max_length: int = 512, batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{spec}:{path}: no such folder (a local Hugging Face model is expected)")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
        self.labels = {int(i): str(n) for i, n in self.model.config.id2label.items()}
        self.max_length, self.batch_size, self.name = max_length, batch_size, f"{spec}:{folder.name}"

    def label(self, pattern: str, negated: str = r"(?:not|non|in|un)") -> int | None:
        """The first label whose name matches ``pattern`` and does not start with a negation."""
        return next((i for i, n in sorted(self.labels.items())
                     if re.search(pattern, n, re.I) and not re.match(negated, n, re.I)), None)

    def probabilities(self, label: int, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """P(``label``) of each text (or of each (text, pair), the text truncated first when too long)."""
        import torch

        out = []
        for i in range(0, len(texts), self.batch_size):
            args = [list(texts[i:i + self.batch_size])]
            if pairs is not None:
                args.append(list(pairs[i:i + self.batch_size]))
            batch = self.tokenizer(*args, padding=True, truncation="only_first" if pairs is not None else True,
                                   max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            out.append(torch.softmax(logits, dim=-1)[:, label].numpy())
        return np.concatenate(out) if out else np.zeros(0)
