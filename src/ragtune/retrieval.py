"""Search a chunk table: ``vector``, ``fts`` (BM25) or ``hybrid`` (LanceDB's own hybrid search, fused by RRF or a
linear combination), optionally re-ranked, and mapped from chunks to documents for document-level judgments."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ragtune import store  # noqa: F401  (sets LanceDB's log level before lancedb is imported)
from ragtune.registry import FUSIONS
from ragtune.types import Hit

@FUSIONS.register("rrf")
def _rrf(config):
    from lancedb.rerankers import RRFReranker

    return RRFReranker(K=config.rrf_k)


@FUSIONS.register("linear")
def _linear(config):
    from lancedb.rerankers import LinearCombinationReranker

    return LinearCombinationReranker(weight=config.weight)


@dataclass
class SearchResult:
    hits: list[Hit]  # every candidate chunk, best first
    timings_ms: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)  # LLM tokens the search took (query rewriting)

    def chunks(self, k: int) -> list[Hit]:
        return self.hits[:k]

    def documents(self, k: int) -> list[Hit]:
        return best_chunk_per_document(self.hits, k)


def _to_hits(rows: list[dict], score: Callable[[dict], float]) -> list[Hit]:
    return [
        Hit(r["id"], r["doc_id"], float(score(r)), rank, r["text"], int(r["start"]), int(r["end"]))
        for rank, r in enumerate(rows, 1)
    ]


class Retriever:
    """Runs one configuration's query path against one table."""

    def __init__(self, config, table, embedder, reranker=None, rewriter=None, late=None):
        self.config, self.table, self.embedder, self.reranker = config, table, embedder, reranker
        self.rewriter = rewriter  # ragtune.rewrite.Rewriter when the config rewrites queries
        self.late = late  # the late-interaction model's CachedEmbedder when the table holds token vectors
        r = config.retrieval
        self.mode = r.mode
        self.ann = store.ann_search(table) if r.mode != "fts" else None  # settings for the ANN index, if any
        self.fusion = FUSIONS.lookup(r.fusion)[0](r) if r.mode == "hybrid" else None

    def depth(self, k: int) -> int:
        return max(k, self.config.retrieval.candidates)

    def _vector(self, vec: np.ndarray, n: int) -> list[Hit]:
        q = self._tuned(self.table.search(vec, vector_column_name="vector").distance_type("cosine").limit(n), n)
        rows = q.select([*store.COLUMNS, "_distance"]).to_list()
        # a cosine; for token vectors LanceDB's distance sums (1 - each question token's best cosine): MaxSim
        tokens = len(vec) if vec.ndim == 2 else 1
        return _to_hits(rows, lambda r: tokens - r["_distance"])

    def _tuned(self, query, n: int):
        """``query`` with the ANN index's search settings (``store.ann_search``), when the table has the index."""
        if self.ann is None:
            return query
        refine = self.ann["refine_factor"]  # HNSW must hold every candidate the re-scoring reads: ef >= n * refine
        query = query.refine_factor(refine)
        return query.ef(max(self.ann["ef"], n * refine)) if "ef" in self.ann else query

    def _fts(self, text: str, n: int) -> list[Hit]:
        rows = self.table.search(text, query_type="fts", fts_columns="text").limit(n)
        return _to_hits(rows.select([*store.COLUMNS, "_score"]).to_list(), lambda r: r["_score"])

    def _hybrid(self, vec: np.ndarray, text: str, n: int) -> list[Hit]:
        """LanceDB's hybrid search. Through its async twin of the table when there is one: the same two legs,
        normalisation and fusion (a test holds the results identical), with the legs run concurrently on LanceDB's
        own event loop instead of a thread pool and schema look-ups per query (7.6 -> 3.9 ms a query, measured)."""
        from lancedb import AsyncTable
        from lancedb.background_loop import LOOP

        twin = getattr(self.table, "_table", None)
        if isinstance(twin, AsyncTable) and vec.ndim == 1:  # the async query reads a matrix as several questions
            q = twin.query().nearest_to(vec).nearest_to_text(text, columns="text").distance_type("cosine")
            q = self._tuned(q.rerank(self.fusion).limit(n).select(store.COLUMNS), n)
            rows = LOOP.run(q.to_arrow()).to_pylist()
        else:
            q = self.table.search(query_type="hybrid").vector(vec).text(text).distance_type("cosine")
            rows = self._tuned(q.rerank(self.fusion).limit(n).select(store.COLUMNS), n).to_list()
        return _to_hits(rows, lambda r: r["_relevance_score"])

    def _first_stage(self, text: str, vector: np.ndarray | None, n: int) -> list[Hit]:
        if self.mode == "vector":
            return self._vector(vector, n)
        if self.mode == "fts":
            return self._fts(text, n) if text.strip() else []
        return self._hybrid(vector, text, n)

    def search(self, text: str, k: int | None = None, vector: np.ndarray | None = None) -> SearchResult:
        """At least ``k`` candidate chunks, best first (more when ``candidates`` asks for more, so that enough
        distinct documents remain). ``vector`` skips embedding the query (when it was embedded in a batch)."""
        k = k or self.config.retrieval.top_k
        n = self.depth(k)
        timings: dict[str, float] = {}
        encoder = self.late or self.embedder  # late interaction: the question's token vectors, never the embedder's
        if self.mode != "fts" and (vector is None or self.late is not None):
            t0 = time.perf_counter()
            vector = encoder.embed_queries([text])[0]
            timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        usage: dict[str, int] = {}
        if self.rewriter is not None and self.rewriter.method == "hyde":
            t0 = time.perf_counter()
            written, usage = self.rewriter.passage(text)
            passage = self.embedder.embed_documents([written])[0]
            vector = (vector + passage) / max(float(np.linalg.norm(vector + passage)), 1e-12)
            timings["rewrite_ms"] = (time.perf_counter() - t0) * 1000
        if self.rewriter is not None and self.rewriter.method == "multi-query":
            t0 = time.perf_counter()
            variants, usage = self.rewriter.variants(text)
            vectors = encoder.embed_queries(variants) if self.mode != "fts" and variants else [None] * len(variants)
            timings["rewrite_ms"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            hits = rrf_fuse([self._first_stage(q, v, n) for q, v in [(text, vector), *zip(variants, vectors)]], n)
        else:
            t0 = time.perf_counter()
            hits = self._first_stage(text, vector, n)
        timings["search_ms"] = (time.perf_counter() - t0) * 1000
        if self.reranker is not None:
            t0 = time.perf_counter()
            hits = self.reranker.rerank(text, hits, self.config.rerank.depth, self.config.rerank.first_stage_weight)
            # a cached score still costs what computing it took: latency stays the model's, cache or not
            timings["rerank_ms"] = (time.perf_counter() - t0) * 1000 + self.reranker.saved_ms
        if self.config.retrieval.mmr is not None and hits:
            t0 = time.perf_counter()
            # MMR weighs relevance scores against each other: after re-ranking only the re-scored head's are on one
            # scale (the rest keep the first stage's and stay behind the head, as re-ranking left them)
            head = hits[:self.config.rerank.depth] if self.reranker is not None else hits
            vectors = self.embedder.embed_documents([h.text for h in head])  # the index's own: read from the cache
            order = mmr_order(np.array([h.score for h in head]), vectors, self.config.retrieval.mmr)
            hits = [replace(h, rank=r) for r, h in enumerate([head[i] for i in order] + hits[len(head):], 1)]
            timings["mmr_ms"] = (time.perf_counter() - t0) * 1000
        if self.config.retrieval.window and hits:
            t0 = time.perf_counter()
            hits = self._windows(hits, self.config.retrieval.window)
            timings["window_ms"] = (time.perf_counter() - t0) * 1000
        return SearchResult(hits, timings, usage)

    def _windows(self, hits: list[Hit], width: int) -> list[Hit]:
        """Small-to-big: each of the results anyone reads (the top ``top_k``, the span cut-offs, the generator's
        context) becomes its span widened to ``width`` neighbouring chunks on each side, read from the table. A
        neighbour the ingest scan flagged ends the window on its side (it must not reach a generator through its
        neighbour); a result whose window lies inside an earlier result's is dropped (the same text twice)."""
        cfg = self.config
        k = max(cfg.retrieval.top_k, *cfg.evaluation.span_k, cfg.generation.context_k if cfg.generation else 0)
        head, position = hits[:k], [h.chunk_id.rsplit("#", 1) for h in hits[:k]]
        wanted = {f"{doc}#{int(n) + d}" for doc, n in position for d in range(-width, width + 1) if d}
        columns = [*store.COLUMNS, *(store.SCAN_COLUMNS if store.has_scan(self.table) else [])]
        rows = self.table.search().where(store.sql_in("id", sorted(wanted))).select(columns).limit(len(wanted)).to_list()
        by_id = {r["id"]: r for r in rows}
        out, taken = [], {}
        for h, (doc, n) in zip(head, position):
            parts = [(h.start, h.end, h.text)]
            for step in (-1, 1):
                for d in range(1, width + 1):
                    r = by_id.get(f"{doc}#{int(n) + step * d}")
                    if r is None or r.get("injection_reasons"):
                        break
                    parts.append((int(r["start"]), int(r["end"]), r["text"]))
            start, end, text = merge_spans(parts)
            if any(s <= start and end <= e for s, e in taken.get(h.doc_id, ())):
                continue
            taken.setdefault(h.doc_id, []).append((start, end))
            out.append(replace(h, text=text, start=start, end=end))
        return [replace(h, rank=r) for r, h in enumerate(out + hits[k:], 1)]


def rrf_fuse(rankings: list[list[Hit]], n: int, k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion (Cormack et al. 2009) of chunk rankings: each chunk scores the sum of 1 / (k + rank)
    over the rankings it is in; the best ``n``, ties by first appearance."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, h in enumerate(ranking, 1):
            scores[h.chunk_id] = scores.get(h.chunk_id, 0.0) + 1.0 / (k + rank)
            first.setdefault(h.chunk_id, h)
    order = sorted(scores, key=lambda c: -scores[c])  # stable: ties keep first appearance
    return [replace(first[c], score=scores[c], rank=r) for r, c in enumerate(order[:n], 1)]


def merge_spans(parts: list[tuple[int, int, str]]) -> tuple[int, int, str]:
    """One span and its text from chunks of one document (start, end, text = the document's text[start:end]),
    overlapping or adjacent; a gap between two (whitespace a chunker dropped) is read as one space."""
    parts = sorted(parts)
    start, end, text = parts[0]
    for s, e, t in parts[1:]:
        if e <= end:
            continue
        text += t[end - s:] if s <= end else " " + t
        end = e
    return start, end, text


def mmr_order(scores: np.ndarray, vectors: np.ndarray, weight: float) -> list[int]:
    """Maximal marginal relevance (Carbonell and Goldstein, 1998): repeatedly take the candidate maximising
    ``weight * relevance - (1 - weight) * its highest cosine similarity to those already taken``, relevance being the
    score min-max normalised. Returns every index, in the new order."""
    from ragtune.rerank import minmax

    relevance = minmax(np.asarray(scores, dtype=np.float64))
    sims = vectors @ vectors.T
    chosen: list[int] = []
    closest = np.full(len(scores), -np.inf)  # each candidate's highest similarity to the chosen ones
    left = np.ones(len(scores), dtype=bool)
    for _ in range(len(scores)):
        gain = weight * relevance - (1 - weight) * (closest if chosen else 0.0)
        best = int(np.argmax(np.where(left, gain, -np.inf)))
        chosen.append(best)
        left[best] = False
        closest = np.maximum(closest, sims[best])
    return chosen


def best_chunk_per_document(hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
    """Document-level ranking: each document takes the rank of its best chunk."""
    seen, out = set(), []
    for h in hits:
        if h.doc_id in seen:
            continue
        seen.add(h.doc_id)
        out.append(replace(h, rank=len(out) + 1))
        if k is not None and len(out) == k:
            break
    return out
