import json

import pytest

from ragtune.data import load_corpus, load_dataset, load_folder, load_qrels, html_to_text
from ragtune.errors import DataError


def write_beir(root, corpus, queries=(), qrels="query-id\tcorpus-id\tscore\n", refs=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(c if isinstance(c, str) else json.dumps(c) for c in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text(qrels)
    if refs is not None:
        (root / "references.jsonl").write_text("\n".join(json.dumps(r) for r in refs) + "\n")
    return root


def test_beir_dataset_loads_graded_qrels_titles_and_skips_empty(tmp_path):
    root = write_beir(
        tmp_path / "ds",
        [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": 2, "text": "Dogs bark."},
         {"_id": "d3", "text": "   "}],
        [{"_id": "q1", "text": "purring", "metadata": {"topic": "pets"}}],
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\t2\t0\n",
    )
    ds = load_dataset(root)
    assert [d.id for d in ds.documents] == ["d1", "2"]
    assert ds.documents[0].text == "Cats\n\nCats purr." and ds.documents[0].metadata["body_offset"] == 6
    assert ds.corpus.skipped_empty == 1
    assert ds.qrels == {"q1": {"d1": 2, "2": 0}}
    assert ds.queries[0].metadata == {"topic": "pets"}


def test_qrels_without_header_and_trec_four_columns(tmp_path):
    p = tmp_path / "q.tsv"
    p.write_text("q1\td1\t1\nq1\td2\t3\n")
    assert load_qrels(p) == {"q1": {"d1": 1, "d2": 3}}
    p.write_text("q1 0 d1 2\n")
    assert load_qrels(p) == {"q1": {"d1": 2}}


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": "y"'], "corpus.jsonl:2: not valid JSON"),
        (['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'], "corpus.jsonl:2: duplicate id 'a' (first seen on line 1)"),
        (['{"_id": "a"}'], "corpus.jsonl:1: missing field 'text'"),
        (['{"_id": "a", "text": 5}'], "corpus.jsonl:1: field 'text' must be str, got int"),
        (['["a", "b"]'], "corpus.jsonl:1: expected a JSON object"),
    ],
)
def test_malformed_corpus_lines_name_file_and_line(tmp_path, lines, message):
    root = write_beir(tmp_path / "ds", lines)
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert message in str(info.value)


def test_bad_qrels_and_queries_name_file_and_line(tmp_path):
    root = write_beir(tmp_path / "ds", [{"_id": "a", "text": "x"}], [{"_id": "q", "text": "x"}],
                      "query-id\tcorpus-id\tscore\nq\ta\t1\nq\ta\thigh\n")
    with pytest.raises(DataError, match=r"test.tsv:3: score must be an integer, got 'high'"):
        load_dataset(root)
    (root / "qrels" / "test.tsv").write_text("q\ta\n")
    with pytest.raises(DataError, match=r"test.tsv:1: expected 3 tab-separated columns"):
        load_dataset(root)
    (root / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n{"_id": "q", "text": "y"}\n')
    with pytest.raises(DataError, match=r"queries.jsonl:2: duplicate id 'q'"):
        load_dataset(root)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")
    root = write_beir(tmp_path / "ds", [{"_id": "a", "text": "x"}])
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(DataError, match=r"qrels/test.tsv: file not found"):
        load_dataset(root)


def test_references_are_shifted_by_the_title_and_checked(tmp_path):
    root = write_beir(tmp_path / "ds", [{"_id": "d", "title": "T", "text": "hello world"}],
                      [{"_id": "q", "text": "x"}], "q\td\t1\n",
                      refs=[{"query-id": "q", "corpus-id": "d", "start": 6, "end": 11}])
    ds = load_dataset(root)
    span = ds.references["q"][0]
    assert ds.documents[0].text[span.start:span.end] == "world"
    (root / "references.jsonl").write_text(json.dumps({"query-id": "q", "corpus-id": "d", "start": 6, "end": 99}))
    with pytest.raises(DataError, match=r"references.jsonl:1: span \[6, 99\) is outside document 'd'"):
        load_dataset(root)


def test_folder_of_documents(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Title A\n\nSome *markdown*.")
    (docs / "sub" / "b.txt").write_text("plain text")
    (docs / "c.html").write_text("<html><head><title>C page</title><script>var x=1;</script></head>"
                                 "<body><h1>Head</h1><p>Para &amp; more</p><ul><li>one</li></ul></body></html>")
    (docs / "empty.txt").write_text("  \n")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    corpus = load_folder(docs)
    by_id = {d.id: d for d in corpus.documents}
    assert sorted(by_id) == ["a", "c", "sub/b"]
    assert corpus.skipped_empty == 1
    assert by_id["a"].metadata["title"] == "Title A"
    assert by_id["c"].metadata["title"] == "C page"
    assert "var x" not in by_id["c"].text and "Para & more" in by_id["c"].text and "- one" in by_id["c"].text
    (docs / "a.txt").write_text("clash")
    with pytest.raises(DataError, match="duplicate document id 'a'"):
        load_folder(docs)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no documents found"):
        load_folder(tmp_path)
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=r"bad.txt: not UTF-8"):
        load_corpus(tmp_path)


def test_html_to_text_keeps_block_structure():
    text, title = html_to_text("<p>a</p><p>b<br>c</p><style>p{}</style>")
    assert text.split("\n") == ["a", "", "b", "c"] or text.replace("\n\n", "\n").split("\n") == ["a", "b", "c"]
    assert title == ""


def test_sample_dataset_is_consistent(sample):
    ids = {d.id for d in sample.documents}
    assert len(ids) >= 30 and len(sample.queries) >= 40
    formats = {d.metadata["format"] for d in sample.documents}
    assert formats == {"markdown", "html", "text"}
    for qid, rel in sample.qrels.items():
        assert set(rel) <= ids, qid
        assert max(rel.values()) == 2
    assert {q.id for q in sample.queries} == set(sample.qrels)


def test_pdf_documents_are_read(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2))
    fig.text(0.05, 0.5, "Parental leave lasts twenty weeks.")
    fig.savefig(tmp_path / "policy.pdf")  # a real PDF with a text layer
    corpus = load_folder(tmp_path)
    (doc,) = corpus.documents
    assert doc.id == "policy" and doc.metadata["format"] == "pdf"
    assert "Parental leave lasts twenty weeks." in doc.text
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(DataError, match="broken.pdf: cannot read PDF"):
        load_folder(tmp_path)


# -- question/answer sets -----------------------------------------------------------------------------------------


def test_qa_jsonl_judged_against_a_corpus_by_its_contexts(tmp_path, sample):
    from ragtune.data import load_dataset

    vacation = next(d for d in sample.documents if d.id == "hr/vacation").text
    # a context copied with its line breaks collapsed, as it would be from a rendered page
    context = " ".join(vacation[vacation.index("Up to"):vacation.index("expire.") + 7].split())
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"id": "carry", "question": "Can I carry vacation over?", "answer": "Up to five days.",
                                "contexts": [context], "metadata": {"topic": "people"}}) + "\n"
                    + json.dumps({"question": "Unrelated?", "contexts": ["not in any document"]}) + "\n")
    ds = load_dataset(path, corpus="sample")
    assert [q.id for q in ds.queries] == ["carry", "2"] and ds.queries[0].answer == "Up to five days."
    assert ds.qrels == {"carry": {"hr/vacation": 1}} and [q.id for q in ds.judged()] == ["carry"]
    (span,) = ds.references["carry"]
    assert " ".join(vacation[span.start:span.end].split()) == context and span.doc_id == "hr/vacation"
    assert ds.queries[0].metadata == {"topic": "people"}


def test_labelled_rag_dataset_json_without_a_corpus(tmp_path):
    from ragtune.data import load_dataset

    path = tmp_path / "rag_dataset.json"
    examples = [{"query": "Who?", "query_by": {"model_name": "gpt-4", "type": "ai"},
                 "reference_contexts": ["Ada wrote the first program.", "She worked with Babbage."],
                 "reference_answer": "Ada.", "reference_answer_by": {"model_name": None, "type": "human"}},
                {"query": "When?", "reference_contexts": ["Ada wrote the first program."], "reference_answer": "1843"}]
    path.write_text(json.dumps({"examples": examples}))
    ds = load_dataset(path)
    assert len(ds.documents) == 2 and [q.answer for q in ds.queries] == ["Ada.", "1843"]
    first = next(d.id for d in ds.documents if d.text.startswith("Ada"))
    assert ds.qrels["1"] == {first: 1, next(d.id for d in ds.documents if d.id != first): 1}
    assert ds.qrels["2"] == {first: 1}


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"question": "q", "contexts": "one"}\n', r"bad.jsonl:1: field 'contexts' must be a list"),
    ("bad.jsonl", '{"contexts": []}\n', r"bad.jsonl:1: missing field 'question'"),
    ("bad.json", '{"data": []}', r"bad.json: expected a LabelledRagDataset object with an 'examples' list"),
    ("bad.json", '{"examples": [{"reference_answer": "x"}]}', r"bad.json: example 1: missing 'query' text"),
    ("bad.json", '{"examples": [', r"bad.json: not valid JSON"),
])
def test_bad_qa_sets_name_file_and_place(tmp_path, name, content, message):
    from ragtune.data import load_dataset

    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / name)


def test_a_streamed_corpus_is_read_from_its_file_at_each_pass_and_equals_the_loaded_one(tmp_path):
    docs = [{"_id": f"d{i}", "title": f"T{i}" if i % 2 else "", "text": f"Text number {i}."} for i in range(50)]
    root = write_beir(tmp_path / "ds", [*docs[:10], {"_id": "empty", "text": " "}, *docs[10:]])
    held, streamed = load_corpus(root), load_corpus(root, stream=True)
    assert not isinstance(streamed.documents, list)
    assert list(streamed.documents) == held.documents == list(streamed.documents)  # every pass, the same documents
    assert [d.metadata for d in streamed.documents] == [d.metadata for d in held.documents]
    assert len(streamed.documents) == len(held.documents) == 50
    assert streamed.skipped_empty == held.skipped_empty == 1
    assert streamed.fingerprint == held.fingerprint  # so both name the same index
    # the texts are not held: a pass reads the file as it is now
    (root / "corpus.jsonl").write_text((root / "corpus.jsonl").read_text().replace("Text number 3.", "Changed."))
    assert next(d for d in streamed.documents if d.id == "d3").text == "T3\n\nChanged."


@pytest.mark.parametrize("lines, message", [
    (['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'], "corpus.jsonl:2: duplicate id 'a'"),
    (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": "y"'], "corpus.jsonl:2: not valid JSON"),
])
def test_a_streamed_corpus_is_checked_in_full_when_loaded(tmp_path, lines, message):
    root = write_beir(tmp_path / "ds", lines)
    with pytest.raises(DataError, match=message):
        load_corpus(root, stream=True)


def test_corpora_at_a_uri_load_as_local_ones(tmp_path):
    """A corpus named by a URI is read through pyarrow's file systems (s3://, gs://... take the same path; file://
    here): a corpus.jsonl, a BEIR folder, streamed or not, and a folder of documents give what the local path gives."""
    docs = [{"_id": f"d{i}", "title": "T" if i % 2 else "", "text": f"Text {i}."} for i in range(20)]
    root = write_beir(tmp_path / "ds", docs)
    for local, uri in ((root, f"file://{root}"), (root / "corpus.jsonl", f"file://{root}/corpus.jsonl")):
        for stream in (False, True):
            there = load_corpus(uri, stream=stream)
            assert list(there.documents) == load_corpus(local).documents and there.source.startswith("file://")
            assert there.fingerprint == load_corpus(local).fingerprint
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Title A\n\nSome *markdown*.")
    (folder / "sub" / "b.html").write_text("<title>B</title><p>Para &amp; more</p>")
    (folder / "empty.txt").write_text(" ")
    there, here = load_corpus(f"file://{folder}"), load_corpus(folder)
    assert [(d.id, d.text, d.metadata["title"]) for d in there.documents] == \
        [(d.id, d.text, d.metadata["title"]) for d in here.documents] == \
        [("a", "# Title A\n\nSome *markdown*.", "Title A"), ("sub/b", "B\nPara & more", "B")]
    assert there.skipped_empty == 1 and there.documents[1].metadata["source"] == f"file://{folder}/sub/b.html"
    with pytest.raises(DataError, match="no corpus.jsonl, dataset or document folder there"):
        load_corpus(f"file://{tmp_path}/nothing")
    with pytest.raises(DataError, match="cannot open"):
        load_corpus("nosuchscheme://bucket/docs")
    (root / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:2: duplicate id 'a'"):
        load_corpus(f"file://{root}")
