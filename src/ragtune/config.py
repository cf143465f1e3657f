"""One validated configuration for a RAG pipeline, serialised as YAML and named by a stable content hash.

Fields that cannot change a result (batch sizes, devices, the display name) are left out of the hash, and
parameters that do not apply to the chosen option (say, the RRF constant of a linear fusion) are cleared, so that
configurations that behave the same share one id.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragtune.detectors.nli import verifier_folder
from ragtune.errors import ConfigError
from ragtune.evaluation.metrics import ANSWER_METRICS, check_metric
from ragtune.registry import EMBEDDERS, GENERATORS, LATE_INTERACTION, RERANKERS

Device = Literal["auto", "cpu", "cuda"]

#: Fields that do not change results: excluded from every hash.
RUNTIME_FIELDS = {"name", "batch_size", "device", "precision", "runtime", "timeout", "retries"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkingConfig(_Section):
    strategy: Literal["sentence", "token", "markdown", "semantic"] = "sentence"
    size: int = Field(256, ge=16, le=8192, description="maximum chunk length in tokens")
    overlap: int = Field(32, ge=0, description="tokens shared by neighbouring chunks")
    tokenizer: Literal["embedder"] | None = Field(
        None, description="what size and overlap count: unset, llama-index's default tokens (tiktoken cl100k_base); "
        "'embedder', the embedder's own tokens, so that no chunk is longer than the model reads")
    breakpoint_percentile: int | None = Field(
        None, ge=50, le=100, description="semantic only: split where sentence distance exceeds this percentile"
    )

    @model_validator(mode="after")
    def _check(self) -> ChunkingConfig:
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        if self.strategy == "semantic" and self.breakpoint_percentile is None:
            object.__setattr__(self, "breakpoint_percentile", 95)
        if self.strategy != "semantic":
            object.__setattr__(self, "breakpoint_percentile", None)
        return self


class EmbeddingConfig(_Section):
    model: str = Field("minilm", description="embedder registry name, or 'openai:<model>' for an HTTP endpoint")
    batch_size: int = Field(64, ge=1, le=65536, description="inputs per batch on the CPU; on CUDA batches are sized to "
                            "free memory, and halved on out-of-memory")
    device: Device = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: fp16 on CUDA, fp32 on the CPU (fp16 and fp32 vectors agree to cosine >= 0.999)"
    )
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="sentence-transformers models: auto runs ONNX Runtime in fp32 on the CPU (exported once, "
        "the same vectors to 1e-7) and torch on CUDA; torch or onnx forces one"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint for 'openai:' models")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")

    @model_validator(mode="after")
    def _check(self) -> EmbeddingConfig:
        EMBEDDERS.check(self.model)
        return self


class FtsConfig(_Section):
    language: str = Field("English", description="stemmer and stop words: a language name (English, German, Arabic, "
                          "...) or auto (the corpus's language, detected at index time)")
    stem: bool = True
    remove_stop_words: bool = True

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        from ragtune.language import AUTO, FTS_LANGUAGES

        if value != AUTO and value not in FTS_LANGUAGES.values():
            known = ", ".join(sorted(FTS_LANGUAGES.values()))
            raise ValueError(f"unknown language {value!r}; expected auto or one of {known}")
        return value


class RetrievalConfig(_Section):
    mode: Literal["vector", "fts", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "linear"] | None = Field("rrf", description="hybrid only")
    rrf_k: int | None = Field(60, ge=1, description="hybrid rrf only: the RRF constant")
    weight: float | None = Field(
        0.7, ge=0.0, le=1.0, description="hybrid linear only: weight of the vector score (1 - weight for BM25)"
    )
    top_k: int = Field(10, ge=1, le=10000, description="results returned by a search")
    candidates: int = Field(100, ge=1, le=10000, description="chunks fetched from the index per query")
    mmr: float | None = Field(None, ge=0.0, lt=1.0, description="maximal marginal relevance: reorder the candidates "
                              "(after a re-ranker: the re-scored ones), trading relevance (this weight) against "
                              "similarity to those ranked above; null: off")
    window: int | None = Field(None, ge=1, le=20, description="small-to-big: each result read back with this many "
                               "neighbouring chunks of its document on each side (search small chunks, return their "
                               "context); null: the chunk alone")
    rewrite: Literal["hyde", "multi-query"] | None = Field(
        None, description="query rewriting by the generation section's LLM: hyde (search with a passage the model "
        "writes) or multi-query (search rephrasings too, fused by RRF); null: the question as asked")
    rewrite_queries: int | None = Field(3, ge=1, le=10, description="multi-query: rephrasings searched beside the "
                                        "question")
    late_interaction: str | None = Field(
        None, description="first stage by late interaction: the table holds each chunk's token vectors from this "
        "model (colbert), which vector and hybrid search rank by MaxSim, in place of the embedder's one vector per "
        "chunk; null: the embedder's vectors")
    fts: FtsConfig = FtsConfig()
    vector_index: Literal["auto", "flat", "hnsw", "ivf_pq"] = Field(
        "auto", description="flat: exact search; hnsw: an IVF_HNSW_SQ index, searched with a wide candidate list and "
        "its results re-scored from the stored vectors; auto: hnsw from 20,000 chunks on; ivf_pq: an IVF_PQ index "
        "(from 256 chunks on), its results re-scored thirty-fold: faster to build and to compact than hnsw"
    )
    vector_dtype: Literal["float16"] | None = Field(
        None, description="how the table stores each chunk's vector: null, float32; float16: half the disk, cosines "
        "within about 1e-3 (the embedding cache keeps float32; the ANN build's peak memory is the same at a million)")

    @model_validator(mode="after")
    def _canonical(self) -> RetrievalConfig:
        if self.mode != "hybrid":
            object.__setattr__(self, "fusion", None)
        elif self.fusion is None:
            object.__setattr__(self, "fusion", "rrf")
        if self.fusion != "rrf":
            object.__setattr__(self, "rrf_k", None)
        elif self.rrf_k is None:
            object.__setattr__(self, "rrf_k", 60)
        if self.fusion != "linear":
            object.__setattr__(self, "weight", None)
        elif self.weight is None:
            object.__setattr__(self, "weight", 0.7)
        if self.mmr is not None and self.mode == "fts":
            raise ValueError("mmr compares the candidates' vectors: it needs mode vector or hybrid")
        if self.rewrite == "hyde" and self.mode == "fts":
            raise ValueError("rewrite hyde searches with a passage's vector: it needs mode vector or hybrid")
        if self.late_interaction is not None:
            LATE_INTERACTION.check(self.late_interaction)
            if self.mode == "fts":
                raise ValueError("late_interaction searches token vectors: it needs mode vector or hybrid")
            if self.rewrite == "hyde":
                raise ValueError("rewrite hyde averages the question's vector with a passage's: it does not apply to "
                                 "late_interaction's token vectors (use multi-query)")
            if self.vector_dtype is not None:
                raise ValueError("vector_dtype float16 applies to one vector per chunk; late_interaction's token "
                                 "vectors are stored as float32")
        if self.rewrite != "multi-query":
            object.__setattr__(self, "rewrite_queries", None)
        elif self.rewrite_queries is None:
            object.__setattr__(self, "rewrite_queries", 3)
        return self


class RerankConfig(_Section):
    model: str | None = Field(None, description="reranker registry name, or null for none")
    depth: int | None = Field(50, ge=1, le=10000, description="candidates the reranker rescores")
    first_stage_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="weight of the first stage's score beside the re-ranker's (each min-max "
        "normalised over the re-scored candidates); null or 0: the re-ranker's order alone")
    batch_size: int = Field(32, ge=1, le=65536, description="inputs per batch on the CPU; on CUDA sized to free memory")
    device: Device = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="torch runtime: auto is fp16 on CUDA, fp32 on the CPU")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="cross-encoder: auto runs the shipped int8 ONNX model on the CPU and its dequantized "
        "weights under torch on CUDA; torch or onnx forces one")

    @model_validator(mode="after")
    def _check(self) -> RerankConfig:
        if self.first_stage_weight == 0:
            object.__setattr__(self, "first_stage_weight", None)
        if self.model in (None, "none"):
            object.__setattr__(self, "model", None)
            object.__setattr__(self, "depth", None)
            object.__setattr__(self, "first_stage_weight", None)
        else:
            RERANKERS.check(self.model)
            if self.depth is None:
                object.__setattr__(self, "depth", 50)
        return self


class GenerationConfig(_Section):
    """How answers are written from the retrieved chunks. Absent (null) in a config: retrieval only."""

    backend: str = Field("extractive", description="extractive (offline), openai:<model> (any OpenAI-compatible "
                                                   "endpoint: vLLM, llama.cpp server, Ollama, OpenAI) or "
                                                   "llama-cpp:<smollm2 | path.gguf> (local, optional extra)")
    prompt: str = Field("answer-v1", description="prompt template: a name in ragtune/prompts/ or a file path")
    context_k: int = Field(5, ge=1, le=100, description="retrieved chunks given to the generator")
    max_sentences: int | None = Field(3, ge=1, le=50, description="extractive: sentences in an answer")
    max_tokens: int = Field(256, ge=1, le=32768, description="openai: completion budget")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    base_url: str | None = Field(None, description="openai: endpoint [env OPENAI_BASE_URL, https://api.openai.com/v1]")
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    retries: int = Field(2, ge=0, le=10, description="retries on timeouts and 429/5xx, with exponential backoff")
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens (cost per query)")
    price_output_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens")

    @model_validator(mode="after")
    def _check(self) -> GenerationConfig:
        GENERATORS.check(self.backend)
        if self.backend != "extractive":
            object.__setattr__(self, "max_sentences", None)
        return self


class JudgeConfig(_Section):
    """An LLM judge of answers (faithfulness, relevance), beside the offline scores. Absent: offline scores only."""

    backend: str = Field(..., description="openai:<model> on any OpenAI-compatible endpoint")
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0, le=10)

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if not self.backend.startswith("openai:") or len(self.backend) <= len("openai:"):
            raise ValueError(f"judge backend {self.backend!r}: expected openai:<model>")
        return self


DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map", "precision@10")


class EvaluationConfig(_Section):
    metrics: tuple[str, ...] = DEFAULT_METRICS
    depth: int = Field(100, ge=1, le=10000, description="ranked results per query that the metrics see")
    span_k: tuple[int, ...] = Field((5, 10), description="chunk cut-offs for span-level scores")
    judge: JudgeConfig | None = Field(None, description="LLM judge of answers; null: offline answer scores only")
    verifier: str | None = Field(None, description="minilm-nli: the shipped NLI adapter's verdict on each claim is "
                                 "blended with the embedding heuristic's; hf-nli:<folder>: a local Hugging Face NLI or "
                                 "factual-consistency model decides each claim (offline answer scores, ragtune judge, "
                                 "the service's review); null: the embedding heuristic alone")

    @model_validator(mode="after")
    def _check(self) -> EvaluationConfig:
        if not self.metrics:
            raise ValueError("metrics must name at least one metric")
        for m in self.metrics:
            check_metric(m)
        if any(k < 1 for k in self.span_k):
            raise ValueError("span_k values must be positive")
        if self.verifier:
            verifier_folder(self.verifier)
        return self


class RagConfig(_Section):
    name: str | None = None
    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    rerank: RerankConfig = RerankConfig()
    generation: GenerationConfig | None = None
    evaluation: EvaluationConfig = EvaluationConfig()

    @model_validator(mode="after")
    def _rewriter(self) -> RagConfig:
        if self.retrieval.rewrite and (self.generation is None or self.generation.backend == "extractive"):
            raise ValueError(f"retrieval.rewrite {self.retrieval.rewrite} asks an LLM: it needs a generation section "
                             "with an LLM backend (openai:<model> or llama-cpp:<model>)")
        return self

    @property
    def quality_metrics(self) -> tuple[str, ...]:
        """The higher-is-better scores an evaluation of this config reports: its retrieval metrics, and the answer
        metrics when it generates answers. Any of them can be a sweep's primary metric and gets a promotion floor."""
        return self.evaluation.metrics + (ANSWER_METRICS if self.generation is not None else ())

    @property
    def span_metrics(self) -> tuple[str, ...]:
        """The scores an evaluation adds on a dataset with reference spans (the chunking set): span recall,
        precision and IoU at each ``span_k``, and the ranking metrics over chunks (``chunk_ndcg@10``)."""
        spans = tuple(f"span_{s}@{k}" for k in self.evaluation.span_k for s in ("recall", "precision", "iou"))
        return spans + tuple(f"chunk_{m}" for m in self.evaluation.metrics)

    # -- identity -----------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """A stable 12-hex-digit id: equal for configurations that must give equal results."""
        return stable_hash(self.model_dump(mode="json"))

    @property
    def index_settings(self) -> dict[str, Any]:
        """What an index depends on besides the corpus: chunking, embedder, full-text and ANN settings."""
        if not self.uses_vectors:  # a full-text configuration's table has no vector column
            return {**self.text_settings, "vectors": False}
        if self.retrieval.late_interaction:  # the vector column holds the late-interaction model's token vectors
            return {**self.text_settings, "late_interaction": self.retrieval.late_interaction,
                    "vector_index": self.retrieval.vector_index}
        return {
            "chunking": self.chunking.model_dump(mode="json"),
            "embedding": self.embedding.model_dump(mode="json"),
            "fts": self.retrieval.fts.model_dump(mode="json"),
            "vector_index": self.retrieval.vector_index,
            "vector_dtype": self.retrieval.vector_dtype,  # None (float32) is left out of the hash: old keys hold
            "injection_scan": 1,  # tables carry each chunk's injection score (store.SCAN_COLUMNS)
        }

    @property
    def uses_vectors(self) -> bool:
        """Whether retrieval reads vectors (vector and hybrid search): only then are chunks and queries embedded and
        does the table carry a vector column."""
        return self.retrieval.mode != "fts"

    @property
    def embeds_queries(self) -> bool:
        """Whether questions get the embedder's vector: for vector and hybrid search by it, and, under late
        interaction, only for the answer's scoring and the extractive generator."""
        return self.uses_vectors and (self.retrieval.late_interaction is None or self.generation is not None)

    @property
    def text_settings(self) -> dict[str, Any]:
        """What full-text search over an index depends on: the chunks (their chunking, and the embedder when semantic
        chunking uses it to find breakpoints or sizes count its tokens) and the full-text settings. Any table built
        with these serves it."""
        settings = {"chunking": self.chunking.model_dump(mode="json"),
                    "fts": self.retrieval.fts.model_dump(mode="json"), "injection_scan": 1}
        if self.chunking.strategy == "semantic" or self.chunking.tokenizer == "embedder":
            settings["embedding"] = self.embedding.model_dump(mode="json")
        return settings

    def index_key(self, corpus_fingerprint: str) -> str:
        """Names the index built from this corpus with these index settings."""
        return stable_hash({"corpus": corpus_fingerprint, **self.index_settings})

    # -- YAML ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "config") -> RagConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> RagConfig:
        return cls.from_dict(read_yaml(path, "config file"), source=str(path))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def with_overrides(self, overrides: dict[str, Any]) -> RagConfig:
        """A copy with dotted-key overrides applied, e.g. ``{"chunking.size": 512}``."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                if p in node and node[p] is None:  # an optional section that is off (generation, judge): turn it on
                    node[p] = {}
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"override {dotted!r}: unknown section {p!r}")
                node = node[p]
            node[leaf] = value
        return RagConfig.from_dict(data, source="overrides")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"chunking": {"size": 1}}`` and ``{"chunking.size": 1}`` both become ``{"chunking.size": 1}``."""
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed YAML of ``path``; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def stable_hash(value: Any, length: int = 12) -> str:
    """sha256 over canonical JSON, with runtime-only fields and unset values removed."""
    canonical = json.dumps(_strip(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in RUNTIME_FIELDS and v is not None}
    if isinstance(value, (list, tuple)):
        return [_strip(v) for v in value]
    return value


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        shown = "" if err["type"] == "extra_forbidden" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)
