"""A configuration's stages, wired: corpus -> chunks -> vectors -> LanceDB table -> search -> (rerank) ->
(answer). The evaluation loop over a dataset is ``ragtune.evaluation.run``; notebooks, the CLI, pipeline tasks and
the service call these; they hold no logic of their own.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ragtune import store
from ragtune.cache import ResponseCache
from ragtune.chunking import chunk_documents, counting_window
from ragtune.config import RagConfig, stable_hash
from ragtune.data import Corpus
from ragtune.detectors.injection import scan
from ragtune.embedding import CachedEmbedder, make_embedder
from ragtune.errors import DataError
from ragtune.evaluation.answers import AnswerScorer
from ragtune.evaluation.judge import Judge
from ragtune.generation import answer, make_generator
from ragtune.late import make_late_interaction
from ragtune.models.tokens import InputWindow, Tokens
from ragtune.rerank import make_reranker
from ragtune.retrieval import Retriever, SearchResult
from ragtune.types import Answer, Hit, IndexInfo
from ragtune.workspace import Workspace


def table_vectors(config: RagConfig, embedder: CachedEmbedder) -> CachedEmbedder:
    """What computes a table's vectors: the late-interaction model when the configuration names one (each chunk's
    token vectors), else the embedder. Both cache by content in the embedder's cache."""
    late = make_late_interaction(config)
    return embedder if late is None else CachedEmbedder(late, embedder.cache)


#: documents chunked, scanned and embedded per step of a table write: one step is in memory, whatever the corpus
DOCUMENTS_PER_STEP = 500


@dataclass
class Encoded:
    """What the steps of a table write held, counted as they go by."""

    chunks: int = 0
    flagged: list[str] = field(default_factory=list)  # ids of chunks the injection scan flagged
    #: chunks longer than the table's vector model reads (their tails are not in the vectors); None: not counted
    truncated: int | None = None

    def add(self, ids: list[str], reasons: list[str], cut=None) -> None:
        """A step's chunks: their ids, each one's injection reasons ("" when not flagged), and with the model's
        window, whether each is longer than the model reads."""
        self.chunks += len(ids)
        self.flagged += [i for i, why in zip(ids, reasons) if why]
        if cut is not None:
            self.truncated = (self.truncated or 0) + int(np.count_nonzero(cut))


def encode_chunks(documents: Iterable, config: RagConfig, embedder: CachedEmbedder,
                  progress: Callable[[int], None] | None = None, vectors: CachedEmbedder | None = None,
                  seen: Encoded | None = None, step: int = DOCUMENTS_PER_STEP,
                  workers: int | None = None) -> Iterator[store.Step]:
    """What every table write is made of (experiment builds and production syncs), step by step: a step's documents
    chunked, each chunk's injection scan (score, reasons), and their vectors (through the cache; None for a
    full-text configuration). Lazy: a step is computed when the write asks for it, so memory holds a few steps.
    Chunking and scanning run in ``workers`` processes (default: one per core) when there is more than one step,
    ahead of the embedding. ``progress(n)``: n more documents done; ``vectors``: the configuration's
    ``table_vectors`` when the caller holds them; ``seen``: counts what went by (the chunks cut at the model's
    input are counted with its tokenizer in the chunking processes, about 13,000 chunks/s on 2 cores, whose ids
    then feed the model)."""
    vectors = (vectors or table_vectors(config, embedder)) if config.uses_vectors else None  # full text: none
    window = counting_window(config.chunking, embedder)
    cut = cut_window(vectors)
    if seen is not None and cut is not None:
        seen.truncated = seen.truncated or 0
    documents = iter(documents)
    parts = iter(lambda: list(itertools.islice(documents, step)), [])
    for part, (chunks, verdicts, tokens) in _chunked(parts, config.chunking, embedder, window, cut, workers):
        if seen is not None:
            seen.add([c.id for c in chunks], [why for _, why in verdicts], cut_of(tokens, cut))
        embedded = vectors.embed_documents([c.text for c in chunks], tokens) if vectors is not None and chunks else None
        yield chunks, verdicts, stored(embedded, config)
        if progress:
            progress(len(part))


def stored(vectors, config: RagConfig):
    """Vectors as the table stores them: float16 under ``retrieval.vector_dtype: float16`` (one vector per chunk)."""
    if config.retrieval.vector_dtype == "float16" and isinstance(vectors, np.ndarray):
        return vectors.astype(np.float16)
    return vectors


def chunk_and_scan(documents: list, chunking, embedder=None, window=None) -> tuple[list, list[tuple[float, str]]]:
    """One step's chunks (sizes counted in ``window``'s tokens when given) and each chunk's injection scan (score,
    reasons)."""
    chunks = chunk_documents(documents, chunking, embedder, window)
    return chunks, scan([c.text for c in chunks])


def cut_window(vectors) -> InputWindow | None:
    """The input window of a table's vector model (``table_vectors``; None for full text), against which each
    chunk is checked for being longer than the model reads; None when the model has no tokenizer ragtune reads."""
    return None if vectors is None else vectors.window


def cut_of(tokens: Tokens | None, cut: InputWindow | None) -> np.ndarray | None:
    """Whether each chunk of ``tokens`` (``prepared``) is longer than the window ``cut`` reads; None: not counted."""
    return None if tokens is None else tokens.lengths > cut.max_tokens


def prepared(documents: list, chunking, embedder, window, cut) -> tuple[list, list, Tokens | None]:
    """``chunk_and_scan``, and with ``cut`` (``cut_window``) each chunk's ids in the vector model's vocabulary
    (``InputWindow.tokens``): tokenized here, in the chunking processes (or Ray actors), they say which chunks are
    longer than the model reads, and they feed the model (``Embedder.frame``) so the process feeding it does not
    tokenize the chunks again."""
    chunks, verdicts = chunk_and_scan(documents, chunking, embedder, window)
    return chunks, verdicts, None if cut is None else cut.tokens([c.text for c in chunks])


def _chunked(parts: Iterator[list], chunking, embedder, window, cut, workers: int | None
             ) -> Iterator[tuple[list, tuple]]:
    """Each part with its ``prepared``, in order: here when there is one part (or semantic chunking, which needs
    the embedder), else in a pool of worker processes with at most ``workers + 1`` parts in flight."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    head = list(itertools.islice(parts, 2))
    if len(head) < 2 or workers < 1 or chunking.strategy == "semantic":
        for part in itertools.chain(head, parts):
            yield part, prepared(part, chunking, embedder, window, cut)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        flight: deque = deque()
        for part in itertools.chain(head, parts):
            flight.append((part, pool.submit(prepared, part, chunking, None, window, cut)))
            if len(flight) > workers:
                done, future = flight.popleft()
                yield done, future.result()
        while flight:
            done, future = flight.popleft()
            yield done, future.result()


@dataclass
class Turn:
    """One question through a configuration: what retrieval found, which chunks were kept from the generator and
    why, the context the generator saw, its answer, and what each stage took."""

    question: str
    found: SearchResult  # every candidate chunk, best first (ranking metrics read it)
    hits: list[Hit]  # the retrieved chunks after the caller's filters, best first
    kept_out: dict[str, list[str]]  # chunk id -> why it was kept from the generator (injection)
    context: list[Hit]  # what the generator saw
    answer: Answer | None  # None when there is no generator
    query_vector: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Engine:
    """One configuration's models and tables, created on first use. ``cache_pairs=False``: the re-ranker and the
    claim verifier score every pair with the model (a live service's questions, and latency trials, which must time
    the model)."""

    def __init__(self, config: RagConfig, workspace: Workspace | None = None, progress: bool = False,
                 cache_pairs: bool = True):
        self.config = config
        self.workspace = workspace or Workspace.default()
        self.progress, self.cache_pairs = progress, cache_pairs

    @cached_property
    def embedder(self) -> CachedEmbedder:
        return CachedEmbedder(make_embedder(self.config.embedding), self.workspace.cache)

    @cached_property
    def vectors(self) -> CachedEmbedder:
        """What the configuration's tables hold and its first stage searches with (``table_vectors``)."""
        return table_vectors(self.config, self.embedder)

    @cached_property
    def reranker(self):
        return make_reranker(self.config.rerank, self.workspace.pair_scores if self.cache_pairs else None)

    @cached_property
    def responses(self):
        return ResponseCache(self.workspace.home / "responses.sqlite")

    @cached_property
    def generator(self):
        """The configuration's answer generator (None when it has no ``generation`` section)."""
        gen = self.config.generation
        return None if gen is None else make_generator(gen, self.embedder, self.responses)

    @cached_property
    def answer_scorer(self) -> AnswerScorer:
        """The offline answer scorer: the embedder's heuristic, and the configured NLI verifier (its verdicts kept in
        the workspace's pair cache)."""
        from ragtune.detectors.nli import make_verifier

        return AnswerScorer(self.embedder, make_verifier(self.config.evaluation.verifier,
                                                         self.workspace.pair_scores if self.cache_pairs else None))

    @cached_property
    def judge(self):
        cfg = self.config.evaluation.judge
        return None if cfg is None else Judge(cfg, self.responses)

    def index(self, corpus: Corpus, steps: Callable[[Iterable, Callable[[int], None] | None],
                                                    Iterable[store.Step]] | None = None):
        """Open the table for this corpus and these settings, building it if it does not exist yet. ``steps(documents,
        progress, seen)``: what computes the table's steps instead of ``encode_chunks`` here (``ragtune.cluster``: Ray),
        counting into ``seen`` (an ``Encoded``) what ``encode_chunks`` counts."""
        if not corpus.documents:
            raise DataError(f"{corpus.source}: the corpus has no non-empty documents")
        start = time.perf_counter()
        key = self.config.index_key(corpus.fingerprint)
        with self.workspace.lock(f"index-{key}"):  # parallel sweep workers build each table once
            table = store.open_index(self.workspace.db, key)
            built, seen = table is None, Encoded()
            if built:
                meta = {"ragtune_index_key": key, "corpus": corpus.source, "fingerprint": corpus.fingerprint}
                with self._bar(len(corpus.documents)) if self.progress else nullcontext() as bar:
                    rows = (steps(corpus.documents, bar and bar.update, seen) if steps else
                            encode_chunks(corpus.documents, self.config, self.embedder, bar and bar.update, self.vectors,
                                          seen))
                    table = store.build_index(self.workspace.db, key, rows, self.config.retrieval, meta)
        info = IndexInfo(
            key, store.table_name(key), stable_hash(self.config.index_settings), corpus.source, corpus.fingerprint,
            len(corpus.documents), table.count_rows(), built, round(time.perf_counter() - start, 3),
            store.count_flagged(table), stable_hash(self.config.text_settings),
            seen.truncated if built else None,
        )
        self.workspace.remember(info)
        return table, info

    def _bar(self, total: int):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"index ({self.config.embedding.model})", unit="doc")

    def open_table(self, key: str):
        table = store.open_index(self.workspace.db, key)
        if table is None:
            raise DataError(f"index {key} is not in {self.workspace.db_uri or self.workspace.home / 'lancedb'}")
        return table

    def retriever(self, table) -> Retriever:
        r = self.config.retrieval
        rewriter = None
        if r.rewrite:
            from ragtune.rewrite import Rewriter

            rewriter = Rewriter(r.rewrite, self.generator, r.rewrite_queries or 0)
        late = self.vectors if self.vectors is not self.embedder else None
        return Retriever(self.config, table, self.embedder, self.reranker, rewriter, late)

    @property
    def depth(self) -> int:
        """Chunks one question retrieves: enough for the evaluation's deepest cut-off, the reported ``top_k`` and the
        generator's context. Every path (evaluation, CLI, service) asks for this depth, so all see one ranking."""
        e, gen = self.config.evaluation, self.config.generation
        return max(e.depth, *e.span_k, self.config.retrieval.top_k, gen.context_k if gen else 0)

    def answer_one(self, question: str, retriever: Retriever, query_vector: np.ndarray | None = None, *,
                   filter: Callable[[Hit], bool] | None = None, flagged: Mapping[str, str] | None = None,
                   check: Callable[[str], Sequence[str]] | None = None, generator=None,
                   context_k: int | None = None) -> Turn:
        """The per-question path of ``ragtune eval``, ``ragtune query`` and the service: retrieve (``filter`` keeps
        chunks), keep chunks from the generator that the ingest scan ``flagged`` (chunk id -> reasons) or that
        ``check`` (chunk text -> reasons) objects to, and answer from the first ``context_k`` of the others with
        ``generator`` (default: the configuration's; none: retrieval only)."""
        timings: dict[str, float] = {}
        if query_vector is None and self.config.embeds_queries:
            t0 = time.perf_counter()
            query_vector = self.embedder.embed_queries([question])[0]
            timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        found = retriever.search(question, self.depth, query_vector)
        timings.update(found.timings_ms)
        hits = [h for h in found.chunks(self.depth) if filter is None or filter(h)]
        generator = self.generator if generator is None else generator
        if generator is None:
            return Turn(question, found, hits, {}, [], None, query_vector, timings)
        k = context_k or self.config.generation.context_k
        flagged = flagged or {}
        kept_out, context = {}, []
        for h in hits:
            if len(context) == k:
                break
            reasons = list(check(h.text)) if check is not None else []
            if not reasons and h.chunk_id in flagged:
                reasons = [f"flagged at ingest: {flagged[h.chunk_id]}"]
            if reasons:
                kept_out[h.chunk_id] = reasons
            else:
                context.append(h)

        t0 = time.perf_counter()
        ans = answer(generator, question, context, query_vector=query_vector)
        timings["generate_ms"] = (time.perf_counter() - t0) * 1000
        return Turn(question, found, hits, kept_out, context, ans, query_vector, timings)
