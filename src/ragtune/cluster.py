"""Ray: joining a cluster, and a table's chunks computed on it (``ragtune index --ray auto|ADDRESS|local``).

A table built on Ray is the local build's steps (``engine.encode_chunks``) computed by Ray Data stages: the documents
go to Ray's object store in blocks of ``DOCUMENTS_PER_STEP`` (this process holds one block; the store spills to
disk), a pool of actors chunks and scans them (one per CPU, at most) and tokenizes each chunk with the vector
model's tokenizer, and a second pool embeds the chunks from those ids through the content-addressed cache (one
actor per GPU where the cluster has GPUs, else one per two CPUs). Ray Data streams the stages with bounded queues
and hands the embedded chunks back to this process in document order, where LanceDB's writer streams them into the
table as a local build does (one commit, then the search indexes and the complete tag): the same rows, ids, texts,
scan and vectors.

Every worker opens the workspace itself: its home (the SQLite embedding cache) must be a path every node can write,
or the cache must be the LanceDB one (``RAGTUNE_CACHE=lance``) on a URI they all reach. Workers import ragtune:
install it on every node.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from ragtune import store
from ragtune.config import RagConfig
from ragtune.chunking import counting_window
from ragtune.engine import DOCUMENTS_PER_STEP, Encoded, Engine, cut_of, cut_window, prepared, stored
from ragtune.errors import ConfigError
from ragtune.models.tokens import Tokens
from ragtune.types import Chunk, Document
from ragtune.workspace import Workspace

#: chunks per batch handed to an embedding actor
EMBED_BATCH = 1024


def connect(address: str) -> tuple[Any, bool]:
    """Join the Ray cluster at ``address`` (``auto``: the one started on this machine by ``ray start`` or named by
    $RAY_ADDRESS; ``local``: a Ray started in this process, for one machine). Returns the ``ray`` module, and whether
    this call joined (False when the caller's process was already connected: it stays connected)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'ragtune[ray]'") from None
    if ray.is_initialized():
        return ray, False
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("RAGTUNE_", "WANDB_", "HF_"))}}
    try:
        with warnings.catch_warnings():  # Ray forks only to exec its own processes, which lancedb's warning misses
            warnings.filterwarnings("ignore", "lancedb fork support is experimental", RuntimeWarning)
            ray.init(address=None if address == "local" else address, runtime_env=env, log_to_driver=False,
                     logging_level="ERROR", configure_logging=False)
    except ConnectionError as exc:
        raise ConfigError(f"--ray {address}: no Ray cluster there ({exc}); start one with `ray start --head`, "
                          "or use --ray local") from None
    return ray, True


class _Stage:
    """A Ray Data actor holding one configuration's engine, opened on the worker."""

    def __init__(self, config: RagConfig, workspace: Workspace):
        self.engine = Engine(config, workspace)


class ChunkStage(_Stage):
    """Documents (id, text) -> their chunks with each chunk's injection scan, as ``engine.prepared``; where the
    vector model's tokenizer is read, each chunk's ids in its vocabulary (column ``ids``, which feed the embedding
    stage) and whether the model reads all of it (column ``cut``, null when not checked)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        docs = [Document(i, t) for i, t in zip(batch["id"].to_pylist(), batch["text"].to_pylist())]
        config, embedder = self.engine.config, self.engine.embedder
        semantic = config.chunking.strategy == "semantic"  # the only chunker that embeds
        cut = cut_window(self.engine.vectors if config.uses_vectors else None)
        chunks, verdicts, tokens = prepared(docs, config.chunking, embedder if semantic else None,
                                            counting_window(config.chunking, embedder), cut)
        rows = pa.Table.from_batches([store.step_batch((chunks, verdicts, None), store.chunk_schema(None))])
        cuts = cut_of(tokens, cut)
        rows = rows.append_column("cut", pa.array([None] * len(chunks) if cuts is None else cuts, pa.bool_()))
        return rows if tokens is None else rows.append_column("ids", tokens.to_arrow())


class EmbedStage(_Stage):
    """Chunks -> the same chunks with their table vectors (``engine.vectors``, through the workspace's cache), fed
    the chunking stage's ids where it counted them (the ids then stay here)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        tokens = None
        if "ids" in batch.column_names:
            tokens = Tokens.from_arrow(batch["ids"])
            batch = batch.drop_columns(["ids"])
        texts = batch["text"].to_pylist()
        vectors = stored(self.engine.vectors.embed_documents(texts, tokens), self.engine.config)
        dim = self.engine.vectors.embedder.multivector or int(vectors.shape[1])
        return batch.append_column("vector", store.vector_column(vectors, dim))


def _step(batch: pa.Table) -> store.Step:
    """A batch of the stages' rows as a step of a table write."""
    columns = {n: batch[n].to_pylist() for n in ("id", "doc_id", "text", "start", "end")}
    chunks = [Chunk(*row) for row in zip(*columns.values())]
    scan = list(zip(batch["injection_score"].to_pylist(), batch["injection_reasons"].to_pylist()))
    if "vector" not in batch.column_names:
        return chunks, scan, None
    column = batch["vector"].combine_chunks()
    if pa.types.is_fixed_size_list(column.type):  # one vector per chunk
        return chunks, scan, column.values.to_numpy().reshape(len(column), column.type.list_size)
    dim = column.type.value_type.list_size  # each chunk's token vectors
    flat, offsets = column.values.values.to_numpy(), column.offsets.to_numpy()
    return chunks, scan, [flat[a * dim : b * dim].reshape(-1, dim) for a, b in zip(offsets[:-1], offsets[1:])]


def _blocks(ray, documents: Iterable[Document], step: int) -> Iterator[Any]:
    """The documents put into Ray's object store a block of ``step`` at a time (it spills to disk when full), so
    this process holds one block of texts, whatever the corpus."""
    documents = iter(documents)
    while part := list(itertools.islice(documents, step)):
        yield ray.put(pa.table({"id": [d.id for d in part], "text": [d.text for d in part]}))


def steps_on_ray(address: str, config: RagConfig, workspace: Workspace, step: int = DOCUMENTS_PER_STEP
                 ) -> Callable[[Iterable[Document], Callable[[int], None] | None], Iterator[store.Step]]:
    """A table write's steps computed on the Ray cluster at ``address``, for ``Engine.index(corpus, steps=...)``."""
    shipped = Workspace(workspace.home.resolve(), workspace.db_uri,
                        workspace.cache_store or os.environ.get("RAGTUNE_CACHE") or "sqlite")

    def steps(documents: Iterable[Document], progress: Callable[[int], None] | None,
              seen: Encoded | None = None) -> Iterator[store.Step]:
        ray, joined = connect(address)
        try:
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # rows in document order
            context.enable_progress_bars = context.print_on_execution_start = False  # ragtune shows its own
            logging.getLogger("ray.data").setLevel(logging.ERROR)
            cpus, gpus = ray.cluster_resources().get("CPU", 1), int(ray.cluster_resources().get("GPU", 0))
            share = min(1.0, cpus / 2)  # an actor's CPUs: a one-CPU cluster still holds one of each stage
            embedders = (gpus or max(1, int(cpus // 2))) if config.uses_vectors else 0
            chunkers = max(1, int((cpus - (0 if gpus else embedders * share)) // share))
            docs = ray.data.from_arrow_refs(list(_blocks(ray, documents, step)))
            stage = {"fn_constructor_args": (config, shipped), "batch_format": "pyarrow", "zero_copy_batch": True}
            rows = docs.map_batches(ChunkStage, batch_size=step, num_cpus=share, udf_modifying_row_count=True,
                                    compute=ray.data.ActorPoolStrategy(min_size=1, max_size=chunkers), **stage)
            if embedders:
                each = {"num_gpus": 1} if gpus else {"num_cpus": share}
                rows = rows.map_batches(EmbedStage, batch_size=EMBED_BATCH, **each, **stage,
                                        compute=ray.data.ActorPoolStrategy(size=embedders))
            last = None  # the documents come in order: a batch's first may be the previous batch's last
            for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
                if not batch.num_rows:
                    continue
                if seen is not None:
                    cuts = batch["cut"]
                    seen.add(batch["id"].to_pylist(), batch["injection_reasons"].to_pylist(),
                             None if cuts.null_count == len(cuts) else cuts.to_numpy(zero_copy_only=False))
                yield _step(batch)
                if progress:
                    ids = batch["doc_id"].to_pylist()
                    progress(sum(a != b for a, b in zip([last, *ids], ids)))
                    last = ids[-1]
        finally:
            if joined:
                ray.shutdown()

    return steps

