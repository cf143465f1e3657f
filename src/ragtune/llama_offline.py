"""llama-index without the network: its tokenizer (tiktoken) and sentence splitter (NLTK) read the data that
llama-index ships instead of fetching it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def offline_llama_index() -> None:
    """Point tiktoken and NLTK at the data llama-index ships, so that nothing is fetched from the network."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec and spec.submodule_search_locations:
        static = Path(next(iter(spec.submodule_search_locations))) / "_static"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(static / "tiktoken_cache"))
        os.environ.setdefault("NLTK_DATA", str(static / "nltk_cache"))
