import numpy as np
import pytest

from ragtune import store
from ragtune.config import RagConfig, RetrievalConfig
from ragtune.engine import Engine
from ragtune.data import Corpus
from ragtune.types import Chunk, Document


def tiny(n=20, dim=8):
    rng = np.random.default_rng(0)
    chunks = [Chunk(f"d{i}#0", f"d{i}", f"text number {i} about apples", 0, 10) for i in range(n)]
    vecs = rng.normal(size=(n, dim)).astype("float32")
    return chunks, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_built_index_is_complete_and_reopened(fresh_workspace):
    db = fresh_workspace.db
    chunks, vecs = tiny()
    steps = [(chunks[:7], None, vecs[:7]), (chunks[7:14], None, vecs[7:14]), (chunks[14:], None, vecs[14:])]
    table = store.build_index(db, "k1", iter(steps), RetrievalConfig(), metadata={"corpus": "tiny"})
    assert table.count_rows() == 20 and table.version == 2  # one write (version 1), then the full-text index
    rows = sorted(table.to_arrow().to_pylist(), key=lambda r: int(r["doc_id"][1:]))
    assert [r["id"] for r in rows] == [c.id for c in chunks]
    assert np.array_equal(np.array([r["vector"] for r in rows], dtype=np.float32), vecs)
    assert store.COMPLETE_TAG in table.tags.list()
    assert any(i.index_type == "FTS" for i in table.list_indices())
    assert table.schema.metadata[b"corpus"] == b"tiny"
    again = store.open_index(db, "k1")
    assert again is not None and again.version == table.version
    assert store.open_index(db, "other") is None


def test_incomplete_leftover_is_dropped_not_searched(fresh_workspace):
    db = fresh_workspace.db
    chunks, vecs = tiny()
    store.build_index(db, "k2", [(chunks, None, vecs)], RetrievalConfig())
    # what a build killed before its last step leaves behind: a table without the completion tag
    db.open_table(store.table_name("k2")).tags.delete(store.COMPLETE_TAG)
    assert store.open_index(db, "k2") is None
    assert store.table_name("k2") not in store.table_names(db)


def test_failed_build_leaves_no_table(fresh_workspace, monkeypatch):
    db = fresh_workspace.db
    chunks, vecs = tiny()

    class Boom(Exception):
        pass

    def fail(*args, **kwargs):
        raise Boom("index build failed")

    monkeypatch.setattr("lancedb.table.LanceTable.create_index", fail)
    with pytest.raises(Boom):
        store.build_index(db, "k3", [(chunks, None, vecs)], RetrievalConfig())
    assert store.table_name("k3") not in store.table_names(db)


def test_a_step_whose_vectors_do_not_cover_its_chunks_leaves_no_table(fresh_workspace):
    chunks, vecs = tiny()
    with pytest.raises(Exception, match="10 chunks but 9 vectors"):
        store.build_index(fresh_workspace.db, "k4", [(chunks[:10], None, vecs[:10]), (chunks[10:], None, vecs[10:19])],
                          RetrievalConfig())
    assert store.table_name("k4") not in store.table_names(fresh_workspace.db)


def test_a_table_write_reads_the_corpus_a_step_at_a_time(sample, fresh_workspace, monkeypatch):
    """Documents are pulled, chunked and embedded as the write consumes them: when the first rows reach LanceDB,
    the steps in flight have been read, not the corpus; the table still holds every chunk, in one commit."""
    from ragtune import engine as engine_module
    from ragtune.chunking import chunk_documents

    pulled, at_first_write = [], []
    real = store.vector_column

    def first_write(vectors, dim):
        at_first_write.append(len(pulled))
        return real(vectors, dim)

    monkeypatch.setattr(store, "vector_column", first_write)

    def documents():
        for d in sample.corpus.documents:
            pulled.append(d.id)
            yield d

    cfg = RagConfig.from_dict({"retrieval": {"mode": "vector"}})
    eng = Engine(cfg, fresh_workspace)
    steps = engine_module.encode_chunks(documents(), cfg, eng.embedder, step=10, workers=2)
    table = store.build_index(fresh_workspace.db, "stream", steps, cfg.retrieval)
    # two worker processes chunk ahead: at most three steps are in flight when the first is written
    assert at_first_write[0] == 30 < len(sample.corpus.documents)
    assert len(at_first_write) == -(-len(sample.corpus.documents) // 10)
    assert len(pulled) == len(sample.corpus.documents)
    whole = [c.id for c in chunk_documents(sample.corpus.documents, cfg.chunking)]
    assert sorted(store.distinct(table, "id")) == sorted(whole) and table.count_rows() == len(whole)


def test_engine_reuses_an_index_and_rebuilds_when_inputs_change(sample, fresh_workspace):

    cfg = RagConfig.from_dict({"chunking": {"size": 128, "overlap": 16}})
    corpus = Corpus(sample.documents[:5], source="five")
    engine = Engine(cfg, fresh_workspace)
    _, first = engine.index(corpus)
    assert first.built and first.chunks > 5
    computed = engine.embedder.stats.computed
    assert computed == first.chunks
    _, second = Engine(cfg, fresh_workspace).index(corpus)
    assert not second.built and second.key == first.key
    # another mode with vectors shares the table; full text builds its own, without vectors and without embedding
    _, hybrid = Engine(cfg.with_overrides({"retrieval.mode": "hybrid"}), fresh_workspace).index(corpus)
    assert not hybrid.built and hybrid.key == first.key
    fts = Engine(cfg.with_overrides({"retrieval.mode": "fts"}), fresh_workspace)
    table, third = fts.index(corpus)
    assert third.built and third.chunks == first.chunks and "vector" not in table.schema.names
    assert fts.embedder.stats.requested == 0
    # another chunking builds a new one, from cached texts where equal
    changed = Corpus(sample.documents[:6], source="six")
    e2 = Engine(cfg, fresh_workspace)
    _, fourth = e2.index(changed)
    assert fourth.built and fourth.key != first.key
    assert e2.embedder.stats.computed == fourth.chunks - first.chunks  # only the new document's chunks


def test_any_lancedb_uri_is_accepted(sample, tmp_path):
    from ragtune.data import Corpus
    from ragtune.workspace import Workspace

    ws = Workspace(tmp_path / "home", db_uri=f"file://{tmp_path}/elsewhere")
    _, info = Engine(RagConfig(), ws).index(Corpus(sample.documents[:3], source="three"))
    assert info.built
    assert (tmp_path / "elsewhere" / f"{info.table}.lance").is_dir()


def test_an_index_that_cannot_be_opened_is_reported_not_dropped(fresh_workspace, monkeypatch):
    """A passing failure (a remote store timing out, say) must not delete a good index."""
    from ragtune.errors import DataError

    db = fresh_workspace.db
    chunks, vecs = tiny()
    store.build_index(db, "k5", [(chunks, None, vecs)], RetrievalConfig())

    def flaky(*args, **kwargs):
        raise OSError("connection reset by peer")

    monkeypatch.setattr(type(db), "open_table", flaky)
    with pytest.raises(DataError, match="could not be opened .*left as it is"):
        store.open_index(db, "k5")
    monkeypatch.undo()
    assert store.open_index(db, "k5") is not None and store.open_index(db, "k5").count_rows() == len(chunks)


GERMAN = [Document(f"de{i}", text) for i, text in enumerate([
    "Jeder Mitarbeiter erhält im ersten Jahr fünfundzwanzig Urlaubstage.",
    "Der Drucker im zweiten Stock hat keinen Toner mehr.",
    "Die Kantine öffnet um halb zwölf und schließt um vierzehn Uhr.",
    "Neue Kolleginnen bekommen am ersten Tag einen Laptop und eine Zugangskarte.",
])]


@pytest.mark.parametrize("language, found", [("German", True), ("auto", True), ("English", False)])
def test_the_full_text_analyser_stems_the_corpus_language(fresh_workspace, language, found):
    """'Mitarbeitern' (dative plural) finds 'Mitarbeiter' only through the German stemmer; auto detects German."""
    cfg = RagConfig.from_dict({"retrieval": {"mode": "fts", "fts": {"language": language}}})
    engine = Engine(cfg, fresh_workspace)
    table, _ = engine.index(Corpus(GERMAN, source="german"))
    hits = engine.retriever(table).search("Urlaub für Mitarbeitern").hits
    assert (any(h.doc_id == "de0" for h in hits)) == found


def test_a_language_the_index_cannot_stem_gets_a_plain_analyser():
    from ragtune.language import fts_analyser

    assert fts_analyser("auto", ["これは日本語の文章です。東京は大きな都市です。"]) == {
        "language": "English", "stem": False, "remove_stop_words": False}
    assert fts_analyser("auto", ["كم عدد أيام الإجازة التي يحصل عليها الموظفون الجدد في السنة الأولى؟"]) == {
        "language": "Arabic"}
    assert fts_analyser("Spanish", []) == {"language": "Spanish"}


def test_chunking_and_scanning_in_worker_processes_gives_what_one_process_gives(sample, fresh_workspace):
    from ragtune import engine as engine_module

    cfg = RagConfig.from_dict({"retrieval": {"mode": "vector"}})
    eng = Engine(cfg, fresh_workspace)
    here = list(engine_module.encode_chunks(sample.corpus.documents, cfg, eng.embedder, step=7, workers=0))
    pooled = list(engine_module.encode_chunks(sample.corpus.documents, cfg, eng.embedder, step=7, workers=2))
    assert len(here) == len(pooled) == -(-len(sample.corpus.documents) // 7)
    for (c1, s1, v1), (c2, s2, v2) in zip(here, pooled):
        assert c1 == c2 and s1 == s2 and np.array_equal(v1, v2)


@pytest.mark.parametrize("late", [False, True])
def test_search_on_an_ann_index_returns_exact_scores_in_exact_order(sample, fresh_workspace, late):
    """``vector_index: hnsw``: the index is searched with a wide candidate list and its results re-scored from the
    stored vectors, so on the sample every score is the exact cosine (or MaxSim) and the order is brute force's."""
    cfg = RagConfig.from_dict({"retrieval": {"mode": "vector", "vector_index": "hnsw", "candidates": 20,
                                             "late_interaction": "colbert" if late else None}})
    engine = Engine(cfg, fresh_workspace)
    table, _ = engine.index(Corpus(sample.corpus.documents[:30], source="ann"))
    retriever = engine.retriever(table)
    assert store.ann_search(table) is not None and retriever.ann == store.ann_search(table)
    rows = store.read_columns(table, ["id", "vector"])
    for q in sample.queries[:5]:
        vec = (engine.vectors.embed_queries([q.text]))[0]
        exact = {}
        for r in rows:
            stored = np.array(r["vector"], dtype=np.float32)
            exact[r["id"]] = float((vec @ stored.T).max(axis=1).sum()) if late else float(vec @ stored)
        want = sorted(exact, key=lambda c: -exact[c])[:20]
        got = retriever.search(q.text, 10).hits
        assert [h.chunk_id for h in got] == want
        assert [h.score for h in got] == pytest.approx([exact[c] for c in want], abs=1e-4)


def test_float16_vectors_search_like_float32_on_msmarco_at_half_the_bytes(workspace):
    """``vector_dtype: float16`` on a real model's vectors of real passages: the stored column is float16 (half the
    bytes), exact search ranks as the float32 table does, and an ANN index over it returns what exact search does."""
    from conftest import msmarco_texts

    from ragtune.errors import ConfigError

    questions, passages = msmarco_texts(30, 1000)
    corpus = Corpus([Document(f"p{i}", t) for i, t in enumerate(passages)], source="msmarco[:1000]")
    tables = {}
    for name, retrieval in {"float32": {}, "float16": {"vector_dtype": "float16"},
                            "float16 hnsw": {"vector_dtype": "float16", "vector_index": "hnsw"}}.items():
        cfg = RagConfig.from_dict({"retrieval": {"mode": "vector", "candidates": 10, **retrieval}})
        engine = Engine(cfg, workspace)
        table, _ = engine.index(corpus)
        tables[name] = (table, engine.retriever(table))
    column = {n: store.read_arrow(t, ["vector"])["vector"] for n, (t, _) in tables.items()}
    assert column["float16"].type.value_type == "halffloat" and column["float32"].type.value_type == "float"
    assert column["float16"].nbytes * 2 == column["float32"].nbytes
    assert store.ann_search(tables["float16 hnsw"][0]) is not None
    same = total = 0
    for q in questions:
        full, half, ann = (r.search(q, 10).hits for _, r in tables.values())
        assert [h.chunk_id for h in ann] == [h.chunk_id for h in half]  # the index finds what exact search finds
        same += len({h.chunk_id for h in full} & {h.chunk_id for h in half})
        total += len(full)
        scores = {h.chunk_id: h.score for h in full}
        assert all(abs(h.score - scores[h.chunk_id]) < 2e-3 for h in half if h.chunk_id in scores)
    assert same / total >= 0.98, same / total
    with pytest.raises(ConfigError, match="late_interaction"):
        RagConfig.from_dict({"retrieval": {"mode": "vector", "vector_dtype": "float16", "late_interaction": "colbert"}})


def test_an_ivf_pq_index_re_scored_finds_what_exact_search_finds_on_msmarco(workspace, sample):
    """``vector_index: ivf_pq`` on a real model's vectors of real passages: the table gets an IVF_PQ index, searched
    with its results re-scored (``PQ_REFINE``-fold) from the stored vectors, so the scores are exact cosines and the
    top ten are exact search's (recall@10 against the flat table); a table too small to train PQ is searched
    exactly."""
    from conftest import msmarco_texts

    questions, passages = msmarco_texts(30, 1000)
    corpus = Corpus([Document(f"p{i}", t) for i, t in enumerate(passages)], source="msmarco[:1000]")
    found = {}
    for index in ("flat", "ivf_pq"):
        engine = Engine(RagConfig.from_dict({"retrieval": {"mode": "vector", "candidates": 10,
                                                           "vector_index": index}}), workspace)
        table, _ = engine.index(corpus)
        retriever = engine.retriever(table)
        found[index] = [retriever.search(q, 10).hits for q in questions]
    assert store.ann_search(table) == {"refine_factor": store.PQ_REFINE} and retriever.ann == store.ann_search(table)
    recall = []
    for exact, ann in zip(found["flat"], found["ivf_pq"]):
        scores = {h.chunk_id: h.score for h in exact}
        recall.append(len(scores.keys() & {h.chunk_id for h in ann}) / len(exact))
        assert all(abs(h.score - scores[h.chunk_id]) < 1e-4 for h in ann if h.chunk_id in scores)
    assert np.mean(recall) >= 0.9, np.mean(recall)
    small = Engine(RagConfig.from_dict({"retrieval": {"mode": "vector", "vector_index": "ivf_pq"}}), workspace)
    table, info = small.index(sample.corpus)
    assert info.chunks < store.PQ_MIN_ROWS and store.ann_search(table) is None
