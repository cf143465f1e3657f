"""The embedding cache runners on several machines share (``RAGTUNE_CACHE=lance``): a LanceDB table beside the
indexes. Writers in separate processes at the same time lose nothing, and nothing is embedded twice."""

import hashlib
import multiprocessing

import numpy as np
import pytest

from ragtune.cache import LanceEmbeddingCache, text_hash
from ragtune.embedding import CachedEmbedder, Embedder
from ragtune.store import connect

TEXTS = [f"passage number {i} about topic {i % 17}" for i in range(3000)]


class Hashed(Embedder):
    """A deterministic stand-in model: a text's vector is drawn from a generator seeded by its hash."""

    model_id = "hashed-8"

    def _encode(self, texts):
        return np.stack([np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
                         .normal(size=8) for t in texts])


def embed(uri, texts, start, counts):
    """One writer process: waits at the barrier, then embeds ``texts`` through the shared cache."""
    cached = CachedEmbedder(Hashed(), LanceEmbeddingCache(connect(uri)))
    cached.block = 250  # several commits per writer, interleaved with the other's
    start.wait()
    cached.embed_documents(texts)
    counts.put(cached.stats.computed)


def writers(uri, parts):
    ctx = multiprocessing.get_context("spawn")
    start, counts = ctx.Barrier(len(parts)), ctx.Queue()
    procs = [ctx.Process(target=embed, args=(uri, part, start, counts)) for part in parts]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    return sorted(counts.get(timeout=5) for _ in procs)


def test_two_concurrent_writers_lose_nothing_and_embed_nothing_twice(tmp_path):
    uri = str(tmp_path / "lancedb")
    assert writers(uri, [TEXTS[:1500], TEXTS[1500:]]) == [1500, 1500]
    cache = LanceEmbeddingCache(connect(uri))
    assert cache.count("hashed-8") == 3000 == cache.table.count_rows()  # every commit landed, none twice
    assert len(cache.table.list_versions()) >= 1 + 2 * 6  # the table's creation, then six commits per writer
    found = cache.get_many("hashed-8", [text_hash(t) for t in TEXTS])
    want = Hashed().encode(TEXTS)
    assert np.allclose(np.stack([found[text_hash(t)] for t in TEXTS]), want)
    # both again, each over every text: all read back, nothing embedded
    assert writers(uri, [TEXTS, TEXTS[::-1]]) == [0, 0]
    assert cache.table.count_rows() == 3000


def test_it_keeps_models_apart_and_token_vectors_whole(tmp_path):
    cache = LanceEmbeddingCache(connect(str(tmp_path / "db")))
    one, many = np.arange(4, dtype=np.float32), np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put_many("a", [(b"\x01" * 16, one)])
    cache.put_many("b's model", [(b"\x01" * 16, many)])
    assert np.array_equal(cache.get_many("a", [b"\x01" * 16, b"\x02" * 16])[b"\x01" * 16], one)
    assert np.array_equal(cache.get_many("b's model", [b"\x01" * 16])[b"\x01" * 16].reshape(-1, 4), many)
    assert cache.count("a") == 1 and cache.count() == 2


def test_a_workspace_with_the_shared_cache_indexes_and_a_second_runner_embeds_nothing(sample, tmp_path):
    from ragtune.config import RagConfig
    from ragtune.data import Corpus
    from ragtune.engine import Engine
    from ragtune.workspace import Workspace

    corpus = Corpus(sample.corpus.documents[:10], source="shared-cache-test")
    db = str(tmp_path / "shared-db")
    config = RagConfig.from_dict({"embedding": {"model": "bge-small"}, "retrieval": {"mode": "vector"}})
    first = Engine(config, Workspace(tmp_path / "runner1", db, cache_store="lance"))
    _, info = first.index(corpus)
    assert first.embedder.stats.computed == info.chunks and isinstance(first.workspace.cache, LanceEmbeddingCache)
    # another runner, its own home, the same database: another chunking needs the same texts' vectors only where
    # chunks coincide, and the same chunking needs none
    other = Engine(config.with_overrides({"retrieval.vector_index": "flat"}),
                   Workspace(tmp_path / "runner2", db, cache_store="lance"))
    _, again = other.index(corpus)
    assert again.built and other.embedder.stats.computed == 0 and again.chunks == info.chunks


def test_an_unknown_cache_store_is_refused(tmp_path, monkeypatch):
    from ragtune.errors import ConfigError
    from ragtune.workspace import Workspace

    monkeypatch.setenv("RAGTUNE_CACHE", "redis")
    with pytest.raises(ConfigError, match="expected sqlite or lance"):
        Workspace(tmp_path).cache
