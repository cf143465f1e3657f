"""A configuration's stages, wired: corpus -> chunks -> vectors -> LanceDB table -> search -> (rerank) ->
(answer). The evaluation loop over a dataset is ``ragtune.evaluation.run``; notebooks, the CLI, pipeline tasks and
the service call these; they hold no logic of their own.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from functools import cached_property

from ragtune import store
from ragtune.chunking import chunk_documents
from ragtune.config import RagConfig, stable_hash
from ragtune.data import Corpus
from ragtune.embedding import CachedEmbedder, make_embedder
from ragtune.errors import DataError
from ragtune.rerank import make_reranker
from ragtune.retrieval import Retriever
from ragtune.types import IndexInfo
from ragtune.workspace import Workspace


class Engine:
    """One configuration's models and tables, created on first use."""

    def __init__(self, config: RagConfig, workspace: Workspace | None = None, progress: bool = False):
        self.config = config
        self.workspace = workspace or Workspace.default()
        self.progress = progress

    @cached_property
    def embedder(self) -> CachedEmbedder:
        return CachedEmbedder(make_embedder(self.config.embedding), self.workspace.cache)

    @cached_property
    def reranker(self):
        return make_reranker(self.config.rerank)

    @cached_property
    def responses(self):
        from ragtune.cache import ResponseCache

        return ResponseCache(self.workspace.home / "responses.sqlite")

    @cached_property
    def generator(self):
        """The configuration's answer generator (None when it has no ``generation`` section)."""
        from ragtune.generation import make_generator

        gen = self.config.generation
        return None if gen is None else make_generator(gen, self.embedder, self.responses)

    @cached_property
    def judge(self):
        from ragtune.evaluation.judge import Judge

        cfg = self.config.evaluation.judge
        return None if cfg is None else Judge(cfg, self.responses)

    def index(self, corpus: Corpus):
        """Open the table for this corpus and these settings, building it if it does not exist yet."""
        if not corpus.documents:
            raise DataError(f"{corpus.source}: the corpus has no non-empty documents")
        start = time.perf_counter()
        key = self.config.index_key(corpus.fingerprint)
        with self.workspace.lock(f"index-{key}"):  # parallel sweep workers build each table once
            table = store.open_index(self.workspace.db, key)
            built = table is None
            if built:
                from ragtune.detectors.injection import scan

                chunks = chunk_documents(corpus.documents, self.config.chunking, self.embedder)
                meta = {"ragtune_index_key": key, "corpus": corpus.source, "fingerprint": corpus.fingerprint}
                verdicts = scan([c.text for c in chunks])
                with self._progress(len(chunks)) as bar:
                    blocks = self.embedder.embed_in_blocks([c.text for c in chunks], bar and bar.update)
                    table = store.build_index(
                        self.workspace.db, key, chunks, blocks, self.config.retrieval.fts,
                        self.config.retrieval.vector_index, meta, verdicts,
                    )
        info = IndexInfo(
            key, store.table_name(key), stable_hash(self.config.index_settings), corpus.source, corpus.fingerprint,
            len(corpus.documents), table.count_rows(), built, round(time.perf_counter() - start, 3),
            store.count_flagged(table),
        )
        self.workspace.remember(info)
        return table, info

    def _progress(self, total: int):
        """A progress bar over embedded chunks (a context manager yielding None when progress is off)."""
        if not self.progress:
            return nullcontext()
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"embed ({self.config.embedding.model})", unit="chunk")

    def open_table(self, key: str):
        table = store.open_index(self.workspace.db, key)
        if table is None:
            raise DataError(f"index {key} is not in {self.workspace.db_uri or self.workspace.home / 'lancedb'}")
        return table

    def retriever(self, table) -> Retriever:
        return Retriever(self.config, table, self.embedder, self.reranker)
