import pytest

from ragtune.chunking import chunk_documents
from ragtune.config import ChunkingConfig
from ragtune.types import Document


def token_count(text: str) -> int:
    from llama_index.core.utils import get_tokenizer

    return len(get_tokenizer()(text))


def uncovered_text(doc, chunks) -> str:
    covered = [False] * len(doc.text)
    for c in chunks:
        for i in range(c.start, c.end):
            covered[i] = True
    return "".join(ch for ch, cov in zip(doc.text, covered) if not cov).strip()


@pytest.mark.parametrize("strategy", ["sentence", "token", "markdown"])
def test_chunks_are_exact_spans_that_cover_the_documents(sample, strategy):
    cfg = ChunkingConfig(strategy=strategy, size=64, overlap=8)
    docs = sample.documents
    chunks = chunk_documents(docs, cfg)
    by_doc = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    assert set(by_doc) == {d.id for d in docs}
    for doc in docs:
        mine = by_doc[doc.id]
        assert [c.id for c in mine] == [f"{doc.id}#{i}" for i in range(len(mine))]
        for c in mine:
            assert doc.text[c.start:c.end] == c.text
        assert uncovered_text(doc, mine) == ""
        assert all(token_count(c.text) <= 64 for c in mine), strategy
    assert len(chunks) > 2 * len(docs)  # 64-token chunks split these documents


def test_overlap_makes_neighbouring_chunks_share_text(sample):
    doc = next(d for d in sample.documents if d.id == "hr/vacation")
    plain = chunk_documents([doc], ChunkingConfig(strategy="token", size=48, overlap=0))
    overlapping = chunk_documents([doc], ChunkingConfig(strategy="token", size=48, overlap=16))
    assert all(a.end <= b.start + 1 for a, b in zip(plain, plain[1:]))
    assert any(b.start < a.end for a, b in zip(overlapping, overlapping[1:]))
    assert len(overlapping) > len(plain)


def test_markdown_chunks_follow_sections_and_keep_the_header_path(sample):
    doc = next(d for d in sample.documents if d.id == "hr/vacation")
    chunks = chunk_documents([doc], ChunkingConfig(strategy="markdown", size=512, overlap=0))
    starts = [c.text.splitlines()[0] for c in chunks]
    assert starts == ["# Vacation and paid time off", "## Requesting time off", "## Carry-over", "## Public holidays"]
    assert chunks[1].metadata["header_path"] == "/Vacation and paid time off/"


def test_long_text_without_markdown_is_still_bounded():
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(300))
    doc = Document("long", text)
    for strategy in ("markdown", "sentence"):
        chunks = chunk_documents([doc], ChunkingConfig(strategy=strategy, size=100, overlap=10))
        assert len(chunks) > 10 and all(token_count(c.text) <= 100 for c in chunks)
        assert all(doc.text[c.start:c.end] == c.text for c in chunks)


def test_semantic_chunking_splits_where_the_topic_changes(workspace):
    from ragtune.config import EmbeddingConfig
    from ragtune.embedding import CachedEmbedder, make_embedder

    cats = " ".join(["Cats are small domesticated felines.", "A cat purrs when it is content.",
                     "Kittens are young cats that love to play.", "Many cats sleep for most of the day."])
    tax = " ".join(["Income tax is levied on annual earnings.", "Tax returns are filed with the revenue office.",
                    "Deductions reduce the taxable income.", "Late tax payments incur interest charges."])
    doc = Document("mixed", cats + " " + tax)
    embedder = CachedEmbedder(make_embedder(EmbeddingConfig(model="minilm", device="cpu")), workspace.cache)
    chunks = chunk_documents([doc], ChunkingConfig(strategy="semantic", size=512, overlap=0, breakpoint_percentile=80), embedder)
    assert len(chunks) >= 2
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    boundary = len(cats)
    # no chunk mixes the two topics much: each lies (almost) entirely on one side of the boundary
    for c in chunks:
        inside = max(0, min(c.end, boundary) - c.start)
        share = inside / (c.end - c.start)
        assert share > 0.75 or share < 0.25, (c.text, share)


def test_empty_input_gives_no_chunks():
    assert chunk_documents([], ChunkingConfig()) == []


# -- sizes in the embedder's own tokens -------------------------------------------------------------------------------


def shared_documents() -> list[Document]:
    """The shared chunking set's three long documents."""
    import json

    from conftest import shared_dataset

    rows = [json.loads(line) for line in open(shared_dataset("chunking") / "corpus.jsonl")]
    return [Document(r["_id"], (r.get("title", "") + "\n" + r["text"]).strip()) for r in rows]


@pytest.fixture(scope="module")
def minilm():
    from ragtune.config import EmbeddingConfig
    from ragtune.embedding import make_embedder

    return make_embedder(EmbeddingConfig(model="minilm"))


@pytest.mark.parametrize("strategy", ["sentence", "token", "markdown"])
def test_sizes_counted_in_the_embedders_tokens_fit_what_it_reads(minilm, strategy):
    from ragtune.chunking import counting_window

    from conftest import minilm_length

    docs, length = shared_documents(), minilm_length()
    cfg = ChunkingConfig(strategy=strategy, size=254, overlap=16, tokenizer="embedder")
    window = counting_window(cfg, minilm)
    assert window.max_tokens == 254  # MiniLM reads 256 tokens, [CLS] and [SEP] among them
    chunks = chunk_documents(docs, cfg, None, window)
    lengths = [length(c.text) for c in chunks]
    assert max(lengths) <= 254 and max(lengths) > 200  # within the model's input, and the budget is used
    by_id = {d.id: d for d in docs}
    assert all(by_id[c.doc_id].text[c.start:c.end] == c.text for c in chunks)
    cl100k = chunk_documents(docs, ChunkingConfig(strategy=strategy, size=254, overlap=16))
    assert max(length(c.text) for c in cl100k) > 254  # the same size in llama-index's tokens overflows the model


def test_an_embedder_size_the_model_cannot_read_is_a_config_error(minilm):
    from ragtune.chunking import counting_window
    from ragtune.config import EmbeddingConfig
    from ragtune.embedding import make_embedder
    from ragtune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"chunking.size: 512 .*at most 254"):
        counting_window(ChunkingConfig(size=512, tokenizer="embedder"), minilm)
    with pytest.raises(ConfigError, match="has no tokenizer"):
        counting_window(ChunkingConfig(tokenizer="embedder"), make_embedder(EmbeddingConfig(model="hashing")))
    assert counting_window(ChunkingConfig(size=512), minilm) is None  # llama-index's tokens: no window


def test_a_build_counts_the_chunks_the_embedder_cuts(fresh_workspace):
    from ragtune import store
    from ragtune.config import RagConfig
    from ragtune.data import Corpus
    from ragtune.engine import Encoded, Engine, encode_chunks

    from conftest import minilm_length

    corpus, length = Corpus(shared_documents(), source="chunking"), minilm_length()
    for tokenizer in (None, "embedder"):
        size = 512 if tokenizer is None else 254
        cfg = RagConfig.from_dict({"chunking": {"size": size, "overlap": 16, "tokenizer": tokenizer},
                                   "retrieval": {"mode": "vector"}})
        engine = Engine(cfg, fresh_workspace)
        table, info = engine.index(corpus)
        texts = [r["text"] for r in store.read_columns(table, ["text"])]
        assert info.built and info.truncated == sum(length(t) > 254 for t in texts)
        seen = Encoded()  # one document a step: chunked, scanned and counted in two worker processes
        assert sum(len(s[0]) for s in encode_chunks(corpus.documents, cfg, engine.embedder, seen=seen, step=1,
                                                    workers=2)) == len(texts)
        assert seen.truncated == info.truncated
        assert (info.truncated > len(texts) // 2) if tokenizer is None else info.truncated == 0
        assert Engine(cfg, fresh_workspace).index(corpus)[1].truncated is None  # reused: not counted
