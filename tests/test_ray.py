"""Sweeps on Ray: a two-node cluster on this machine (a head and a second node joined to it, one CPU each), started
and stopped here. A sweep on it writes what a local sweep writes; losing the second node mid-sweep still
completes it."""

import threading
import time

import numpy as np
import pandas as pd
import pytest

from ragtune.experiments.sweep import SweepSpec, run_sweep

SPEC = {
    "name": "ray", "dataset": "sample", "queries": 20, "tracking": {"mode": "disabled"},
    "base": {"chunking": {"strategy": "sentence", "size": 256, "overlap": 32}},
    "grid": {"retrieval.mode": ["fts", "vector"], "chunking.size": [128, 256]},
    "baseline": {"retrieval.mode": "fts"},
}
# on this machine's own address: a driver given 127.0.0.1 looks for the cluster at the machine's address anyway
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    second = c.add_node(**NODE)
    c.wait_for_nodes()
    yield c, second
    c.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The same sweep run here, in one process: the reference."""
    out = tmp_path_factory.mktemp("local")
    run_sweep(SweepSpec(**SPEC), out / "sweep", runner="inprocess", home=out / "home", progress=False)
    return out / "sweep"


def scores(folder) -> pd.DataFrame:
    """Each configuration's per-query metrics, by (config id, query id); timings left out."""
    frame = pd.read_parquet(folder / "results.parquet")
    keep = [c for c in frame.columns if not c.endswith("_ms")]
    return frame[keep].sort_values(["config_id", "query_id"]).reset_index(drop=True)


def test_a_sweep_on_two_nodes_writes_what_a_local_sweep_writes(cluster, local, tmp_path):
    c, _ = cluster
    spec = SweepSpec(**SPEC)
    report = run_sweep(spec, tmp_path / "sweep", runner="inprocess", home=tmp_path / "home", progress=False,
                       ray=c.address)
    assert report.count("done") == len(spec.expand()) == 4
    pd.testing.assert_frame_equal(scores(tmp_path / "sweep"), scores(local))
    summary = pd.read_parquet(tmp_path / "sweep" / "summary.parquet")
    assert set(summary["status"]) == {"done"}
    # one table per distinct index setting: fts at two sizes, vectors at two sizes
    assert len(list((tmp_path / "home" / "lancedb").glob("chunks_*.lance"))) == 4
    import ray

    assert not ray.is_initialized()  # the sweep joined the cluster, and left it
    again = run_sweep(spec, tmp_path / "sweep", runner="inprocess", home=tmp_path / "home", progress=False,
                      ray=c.address)
    assert again.count("skipped") == 4  # resumable as a local sweep is


def test_an_index_built_on_ray_equals_the_local_build(cluster, tmp_path):
    """Chunking and embedding as Ray Data stages on the two nodes (8 documents per block): the table holds what a
    local build writes (ids, texts, spans, injection scan, vectors; rows in the same order) and has the same search
    indexes; the chunks longer than the embedder reads are counted there too. Each build has its own cache here,
    so every vector is computed twice."""
    from ragtune.cluster import steps_on_ray
    from ragtune.config import RagConfig
    from ragtune.data import Corpus, load_corpus
    from ragtune.engine import Engine
    from ragtune.types import Document
    from ragtune.workspace import Workspace

    from conftest import minilm_length

    c, _ = cluster
    cfg = RagConfig(chunking={"strategy": "sentence", "size": 256, "overlap": 16}, retrieval={"mode": "hybrid"})
    sample = load_corpus("sample").documents  # and a long document, so that documents are split
    corpus = Corpus([*sample, Document("handbook", "\n\n".join(d.text for d in sample[:8]))], source="sample+1")
    local, counted = Engine(cfg, Workspace(tmp_path / "local")).index(corpus)
    workspace = Workspace(tmp_path / "ray")
    on_ray, info = Engine(cfg, workspace).index(corpus, steps_on_ray(c.address, cfg, workspace, step=8))
    assert info.built and info.documents == len(corpus.documents)
    # the chunks longer than MiniLM reads, counted by the chunking actors as by the local build
    length, texts = minilm_length(), local.to_arrow()["text"].to_pylist()
    assert info.truncated == counted.truncated == sum(length(t) > 254 for t in texts) > 0
    assert on_ray.count_rows() == local.count_rows() == info.chunks > len(corpus.documents)
    a, b = on_ray.to_arrow(), local.to_arrow()
    assert a.schema == b.schema
    for name in ("id", "doc_id", "text", "start", "end", "injection_reasons"):
        assert a[name].equals(b[name]), name
    # the models see other batches there (a text's output moves in the 6th digit with its batch's padding)
    np.testing.assert_allclose(np.stack(a["vector"].to_numpy(zero_copy_only=False)),
                               np.stack(b["vector"].to_numpy(zero_copy_only=False)), atol=1e-5)
    np.testing.assert_allclose(a["injection_score"].to_numpy(), b["injection_score"].to_numpy(), atol=1e-5)
    assert ({(i.index_type, tuple(i.columns)) for i in on_ray.list_indices()}
            == {(i.index_type, tuple(i.columns)) for i in local.list_indices()})
    assert on_ray.tags.list().keys() == local.tags.list().keys()
    # each distinct chunk text embedded by the workers, into the workspace's cache
    assert workspace.cache.count() == len(set(local.to_arrow()["text"].to_pylist()))


def test_losing_the_second_node_mid_sweep_still_completes_it(cluster, local, tmp_path):
    """The second node is killed (no graceful stop) once configurations have started and before all have finished;
    Ray runs its lost task again on the head, and the sweep's results equal the local run's."""
    c, second = cluster
    spec = SweepSpec(**SPEC)
    out = tmp_path / "sweep"
    done = {}
    runner = threading.Thread(target=lambda: done.setdefault("report", run_sweep(
        spec, out, runner="inprocess", home=tmp_path / "home", progress=False, ray=c.address)))
    runner.start()
    deadline = time.monotonic() + 300
    while len(list(out.glob("configs/*/config.yaml"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    finished = len(list(out.glob("configs/*/result/metrics.json")))
    c.remove_node(second, allow_graceful=False)
    runner.join(timeout=600)
    assert finished < 4, "the node was lost after the sweep's end: nothing tested"
    assert not runner.is_alive()
    assert done["report"].count("done") == 4
    pd.testing.assert_frame_equal(scores(out), scores(local))


def test_a_caller_already_connected_to_ray_stays_connected(cluster):
    import ray

    from ragtune.experiments.on_ray import Resources, run_tasks

    c, _ = cluster
    ray.init(address=c.address, log_to_driver=False)
    try:
        got = list(run_tasks(c.address, [(pow, (2, 5), "g"), (pow, (3, 2), "g")], Resources(), {"g": (abs, (-1,))}))
        assert sorted((i, r) for i, r, _ in got) == [(0, 32), (1, 9)]
        assert ray.is_initialized()
    finally:
        ray.shutdown()


def test_the_stages_rows_come_back_as_the_steps_a_local_build_writes():
    """What travels between the Ray stages and the writer: one vector per chunk, or a chunk's token vectors."""
    import pyarrow as pa

    from ragtune import store
    from ragtune.cluster import _step
    from ragtune.types import Chunk

    rng = np.random.default_rng(0)
    chunks = [Chunk(f"d#{n}", "d", f"text {n}", n, n + 1) for n in range(3)]
    rows = pa.table({"id": [c.id for c in chunks], "doc_id": ["d"] * 3, "text": [c.text for c in chunks],
                     "start": [0, 1, 2], "end": [1, 2, 3], "injection_score": pa.array([0.1, 0.9, 0.2], pa.float32()),
                     "injection_reasons": ["", "classifier", ""]})
    assert _step(rows)[0] == chunks and _step(rows)[2] is None
    assert _step(rows)[1] == [(pytest.approx(0.1), ""), (pytest.approx(0.9), "classifier"), (pytest.approx(0.2), "")]
    flat = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(_step(rows.append_column("vector", store.vector_column(flat, 4)))[2], flat)
    tokens = [rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 1, 5)]
    back = _step(rows.append_column("vector", store.vector_column(tokens, 4)))[2]
    assert [m.shape for m in back] == [(3, 4), (1, 4), (5, 4)]
    for got, want in zip(back, tokens):
        np.testing.assert_array_equal(got, want)


def test_the_embedding_stage_is_fed_the_ids_the_chunking_stage_counted(tmp_path, monkeypatch):
    """The Ray stages called here in one process: the chunking stage's ``ids`` are the vector model's own tokens
    of each chunk (MiniLM's tokenizer, loaded here), the embedding stage feeds them to the model without tokenizing
    the chunks again and keeps them (the writer never sees them), and its vectors are the texts' own; the ``cut``
    column says which chunks are longer than MiniLM reads."""
    import pyarrow as pa

    from conftest import counted_encodes, minilm_ids, msmarco_texts

    from ragtune.cluster import ChunkStage, EmbedStage
    from ragtune.config import RagConfig
    from ragtune.workspace import Workspace

    calls = counted_encodes(monkeypatch)
    passages = msmarco_texts(0, 12)[1]
    texts = [*passages, " ".join(passages)]  # one document longer than MiniLM reads
    cfg = RagConfig(chunking={"strategy": "sentence", "size": 512, "overlap": 0}, retrieval={"mode": "vector"})
    workspace = Workspace(tmp_path)
    rows = ChunkStage(cfg, workspace)(pa.table({"id": [f"p{i}" for i in range(len(texts))], "text": texts}))
    chunks, ids = rows["text"].to_pylist(), minilm_ids()
    assert rows["ids"].to_pylist() == [ids(t) for t in chunks]
    assert rows["cut"].to_pylist() == [len(ids(t)) > 254 for t in chunks] and any(rows["cut"].to_pylist())
    embedded = EmbedStage(cfg, workspace)(rows)
    assert calls == {"texts": 0, "ids": 1}
    assert "ids" not in embedded.column_names and embedded["text"].to_pylist() == chunks
    vectors = np.stack(embedded["vector"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(vectors, EmbedStage(cfg, workspace).engine.vectors.embedder.encode(chunks), atol=1e-6)
