"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import os
import platform
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAGTUNE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def dataset_path(name: str) -> Path:
    path = SHARED / name
    if not (path / "corpus.jsonl").is_file():
        sys.exit(f"needs {path} (set RAGTUNE_SHARED_DATASETS)")
    return path


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {date.today()}"


def texts_of(tokenizer, n: int, tokens: int, rng, prefix_words: int = 0) -> list:
    """n texts of exactly ``tokens`` tokens (whole-word vocabulary entries, one token each, plus [CLS] and [SEP]);
    with ``prefix_words``, (query, passage) pairs of that many tokens in all."""
    import numpy as np

    words = np.array(sorted(w for w in tokenizer.get_vocab() if w.isascii() and w.isalpha() and len(w) >= 3))
    if prefix_words:
        body = tokens - 3 - prefix_words
        return [(" ".join(rng.choice(words, prefix_words)), " ".join(rng.choice(words, body))) for _ in range(n)]
    return [" ".join(rng.choice(words, tokens - 2)) for _ in range(n)]
