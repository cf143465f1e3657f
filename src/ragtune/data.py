"""Loading corpora, queries and relevance judgments.

Two shapes of input:

- a BEIR folder: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
  ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``; header optional; graded scores kept), and
  optionally ``references.jsonl`` (span judgments: ``query-id``, ``corpus-id``, ``start``, ``end``);
- a folder of the user's own documents (Markdown, plain text, HTML, PDF), optionally with ``queries.jsonl`` and
  ``qrels/`` beside a ``docs/`` folder.

Malformed input is an error naming file and line; duplicate ids are an error; empty documents are skipped and counted.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit
from typing import Any

from ragtune.errors import BackendError, DataError
from ragtune.types import Document, Query, Span

TEXT_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}
DOC_SUFFIXES = {**TEXT_SUFFIXES, ".pdf": "pdf"}
ID_FIELDS = {"_id", "query-id", "corpus-id"}


class DocumentStream:
    """A corpus file's documents read again from the file each time they are iterated, instead of held in memory (a
    corpus of millions of documents): what stays is each document's id and text hash, for ``len`` and the corpus
    fingerprint. The file is read and checked in full when the stream is made."""

    def __init__(self, read: Callable[[], Iterator[Document]], hashes: dict[str, bytes]):
        self._read, self.hashes = read, hashes

    def __iter__(self) -> Iterator[Document]:
        return self._read()

    def __len__(self) -> int:
        return len(self.hashes)


@dataclass
class Corpus:
    #: a list, or a ``DocumentStream`` (``load_corpus(..., stream=True)``): iterate it, take its ``len``
    documents: list[Document] | DocumentStream
    skipped_empty: int = 0
    source: str = ""

    @cached_property
    def fingerprint(self) -> str:
        """Hash of every (id, text): computed once, so do not change ``documents`` after reading it."""
        if isinstance(self.documents, DocumentStream):
            return _fingerprint(self.documents.hashes.items())
        return corpus_fingerprint(self.documents)


@dataclass
class Dataset:
    name: str
    corpus: Corpus
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    references: dict[str, list[Span]] = field(default_factory=dict)

    @property
    def documents(self) -> list[Document]:
        return self.corpus.documents

    def judged(self) -> list[Query]:
        """The queries that can be scored: a relevant judgment (grade > 0) or a reference span."""
        return [q for q in self.queries
                if any(g > 0 for g in self.qrels.get(q.id, {}).values()) or q.id in self.references]

    def subset(self, query_ids: list[str]) -> Dataset:
        keep = set(query_ids)
        return Dataset(
            self.name,
            self.corpus,
            [q for q in self.queries if q.id in keep],
            {q: r for q, r in self.qrels.items() if q in keep},
            {q: r for q, r in self.references.items() if q in keep},
        )


def corpus_fingerprint(documents: list[Document]) -> str:
    return _fingerprint((d.id, text_digest(d.text)) for d in documents)


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _fingerprint(digests: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for ident, digest in sorted(digests):
        h.update(ident.encode("utf-8") + b"\0" + digest)
    return h.hexdigest()[:16]


# -- JSONL ---------------------------------------------------------------------------------------------------------


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (line number, object); blank lines are passed over. ``path``: a local path or a URI (``is_uri``)."""
    uri, path = str(path) if is_uri(path) else None, name_of(path)
    try:
        handle = _open_uri(uri) if uri else Path(path).open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    with handle:
        try:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _field(obj: dict, name: str, path: Path, lineno: int, kind: type = str, required: bool = True) -> Any:
    if name not in obj:
        if not required:
            return None
        raise DataError(f"{path}:{lineno}: missing field {name!r}")
    value = obj[name]
    if name in ID_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids are common in BEIR files
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}:{lineno}: field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


class _Ids:
    def __init__(self, path: Path):
        self.path, self.seen = path, {}

    def check(self, ident: str, lineno: int) -> None:
        if not ident:
            raise DataError(f"{self.path}:{lineno}: empty id")
        if ident in self.seen:
            raise DataError(f"{self.path}:{lineno}: duplicate id {ident!r} (first seen on line {self.seen[ident]})")
        self.seen[ident] = lineno


def load_beir_corpus(path: Path | str, include_title: bool = True, stream: bool = False) -> Corpus:
    """Titles are prepended to the text (``title\\n\\n``); ``metadata['body_offset']`` says by how much.
    ``stream``: the documents are a ``DocumentStream`` (read from the file at each pass) instead of a list."""
    if not stream:
        docs = list(_beir_documents(path, include_title))
        kept = [d for d in docs if d.text.strip()]
        return Corpus(kept, len(docs) - len(kept), name_of(path))
    hashes, skipped = {}, 0
    for doc in _beir_documents(path, include_title):  # read once in full: every error is raised here
        if doc.text.strip():
            hashes[doc.id] = text_digest(doc.text)
        else:
            skipped += 1

    def again() -> Iterator[Document]:
        return (d for d in _beir_documents(path, include_title, check=False) if d.text.strip())

    return Corpus(DocumentStream(again, hashes), skipped, name_of(path))


def _beir_documents(path: Path | str, include_title: bool, check: bool = True) -> Iterator[Document]:
    """Every document of a BEIR ``corpus.jsonl`` in file order, empty ones included; ``check``: duplicate ids are
    an error (the other checks always run)."""
    ids, name = _Ids(name_of(path)), name_of(path)
    for lineno, obj in read_jsonl(path):
        ident = _field(obj, "_id", name, lineno)
        if check:
            ids.check(ident, lineno)
        text = _field(obj, "text", name, lineno)
        title = _field(obj, "title", name, lineno, required=False) or ""
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        prefix = f"{title}\n\n" if include_title and title.strip() and text.strip() else ""
        yield Document(ident, prefix + text, {**meta, "title": title, "body_offset": len(prefix)})


def load_queries(path: Path) -> list[Query]:
    queries, ids = [], _Ids(path)
    for lineno, obj in read_jsonl(path):
        ident = _field(obj, "_id", path, lineno)
        ids.check(ident, lineno)
        text = _field(obj, "text", path, lineno)
        if not text.strip():
            raise DataError(f"{path}:{lineno}: query {ident!r} has empty text")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        answer = _field(obj, "answer", path, lineno, required=False)
        queries.append(Query(ident, text, meta, answer))
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC-style judgments as ``{query: {doc: grade}}``; a header line is recognised and skipped."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if len(cols) == 4:  # TREC qrels: query, iteration, doc, grade
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            raise DataError(f"{path}:{lineno}: expected 3 tab-separated columns (query-id, corpus-id, score)")
        qid, did, grade = (c.strip() for c in cols)
        try:
            value = int(float(grade))
        except ValueError:
            if lineno == 1:
                continue  # header
            raise DataError(f"{path}:{lineno}: score must be an integer, got {grade!r}") from None
        qrels.setdefault(qid, {})[did] = value
    return qrels


def load_references(path: Path, documents: dict[str, Document]) -> dict[str, list[Span]]:
    refs: dict[str, list[Span]] = {}
    for lineno, obj in read_jsonl(path):
        qid = _field(obj, "query-id", path, lineno)
        did = _field(obj, "corpus-id", path, lineno)
        start = _field(obj, "start", path, lineno, int)
        end = _field(obj, "end", path, lineno, int)
        doc = documents.get(did)
        if doc is None:
            raise DataError(f"{path}:{lineno}: corpus-id {did!r} is not in the corpus")
        offset = doc.metadata.get("body_offset", 0)
        if not 0 <= start < end <= len(doc.text) - offset:
            raise DataError(f"{path}:{lineno}: span [{start}, {end}) is outside document {did!r}")
        refs.setdefault(qid, []).append(Span(did, start + offset, end + offset))
    return refs


# -- folders of the user's own documents ----------------------------------------------------------------------------


class _HtmlText(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "table", "ul"}
    SKIP = {"script", "style", "head", "noscript", "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text, parser.title.strip()


def _pdf_text(data: bytes, path: str) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise BackendError(f"{path}: reading PDF needs pypdf (pip install 'ragtune[pdf]')") from None
    try:
        return "\n\n".join((page.extract_text() or "") for page in PdfReader(io.BytesIO(data)).pages)
    except Exception as exc:  # pypdf raises many types on broken files
        raise DataError(f"{path}: cannot read PDF ({exc})") from None


def parse_document(data: bytes, suffix: str, ident: str, source: str) -> Document:
    """A document file's text and title from its bytes (``suffix``: its kind, one of DOC_SUFFIXES)."""
    kind = DOC_SUFFIXES[suffix.lower()]
    if kind == "pdf":
        text, title = _pdf_text(data, source), Path(source.split("?", 1)[0]).stem
    else:
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if kind == "html":
            text, title = html_to_text(raw)
        else:
            text = raw
            heading = re.search(r"^#\s+(.+)$", raw, re.M) if kind == "markdown" else None
            title = heading.group(1).strip() if heading else Path(source.split("?", 1)[0]).stem
    return Document(ident, text, {"source": source, "format": kind, "title": title})


def load_folder(folder: Path | str) -> Corpus:
    """Every supported file below ``folder`` (a local folder, or a URI: ``is_uri``); the id is the relative path
    without its suffix."""
    files = _remote_files(str(folder)) if is_uri(folder) else _local_files(Path(folder))
    docs, skipped, seen = [], 0, {}
    for relative, read, source in files:
        ident = PurePosixPath(relative).with_suffix("").as_posix()
        if ident in seen:
            raise DataError(f"{source}: duplicate document id {ident!r} (also {seen[ident]})")
        seen[ident] = source
        doc = parse_document(read(), PurePosixPath(relative).suffix, ident, source)
        if not doc.text.strip():
            skipped += 1
            continue
        docs.append(doc)
    if not docs and not skipped:
        raise DataError(f"{name_of(folder)}: no documents found (looked for {', '.join(sorted(DOC_SUFFIXES))})")
    return Corpus(docs, skipped, name_of(folder))


Listing = Iterator[tuple[str, Callable[[], bytes], str]]  # (relative path, read its bytes, where it is)


def _local_files(folder: Path) -> Listing:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES):
        yield path.relative_to(folder).as_posix(), path.read_bytes, str(path)


# -- corpora on object stores and other file systems ----------------------------------------------------------------


def is_uri(location: str | Path) -> bool:
    """A location with a scheme (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``), read through pyarrow's
    file systems; options go in the query (``s3://bucket/docs?region=eu-west-1&endpoint_override=...``)."""
    return "://" in str(location)


def name_of(location: str | Path) -> str:
    """How a location is named in messages and records (a URI ``shown``)."""
    return shown(str(location)) if is_uri(location) else str(location)


def shown(uri: str) -> str:
    """``uri`` as it may be shown and recorded: without its query (options) and without a password in it."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _filesystem(uri: str):
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError... for schemes and options
        raise DataError(f"{shown(uri)}: cannot open ({str(exc).replace(uri, shown(uri))})") from None


def _child(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def _kind(filesystem, path: str) -> str:
    return filesystem.get_file_info(path).type.name  # File, Directory, NotFound


def _open_uri(uri: str) -> io.TextIOBase:
    filesystem, path = _filesystem(uri)
    if _kind(filesystem, path) != "File":
        raise FileNotFoundError(shown(uri))
    return io.TextIOWrapper(filesystem.open_input_stream(path), encoding="utf-8")


def _remote_files(uri: str) -> Listing:
    from pyarrow import fs

    filesystem, base = _filesystem(uri)
    if _kind(filesystem, base) != "Directory":
        raise DataError(f"{shown(uri)}: not a folder")
    found = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    for info in sorted((i for i in found if i.type.name == "File"), key=lambda i: i.path):
        relative = info.path[len(base.rstrip("/")) + 1 :]
        if PurePosixPath(relative).suffix.lower() in DOC_SUFFIXES:
            yield relative, lambda p=info.path: filesystem.open_input_stream(p).readall(), shown(_child(uri, relative))


def _load_uri(uri: str, stream: bool) -> Corpus:
    filesystem, path = _filesystem(uri)
    kind = _kind(filesystem, path)
    if kind == "File" and path.endswith(".jsonl"):
        return load_beir_corpus(uri, stream=stream)
    if kind == "Directory":
        if _kind(filesystem, path.rstrip("/") + "/corpus.jsonl") == "File":
            return load_beir_corpus(_child(uri, "corpus.jsonl"), stream=stream)
        if _kind(filesystem, path.rstrip("/") + "/docs") == "Directory":
            return load_folder(_child(uri, "docs"))
        return load_folder(uri)
    raise DataError(f"{shown(uri)}: no corpus.jsonl, dataset or document folder there")


# -- entry points ---------------------------------------------------------------------------------------------------


def load_corpus(path: str | Path, stream: bool = False) -> Corpus:
    """A BEIR folder, a ``corpus.jsonl`` file, a dataset folder with ``docs/``, a plain folder of documents, or
    ``"sample"``. ``stream``: a ``corpus.jsonl`` is read from the file at each pass over its documents instead of
    held in memory (index builds and ingests of large corpora); a folder is read into memory either way. A URI
    (``s3://bucket/docs``: ``is_uri``) is read through pyarrow's file systems, in the same shapes."""
    if is_uri(path):
        return _load_uri(str(path), stream)
    path = resolve_dataset(path)
    if path.is_file() and path.suffix == ".jsonl":
        return load_beir_corpus(path, stream=stream)
    if (path / "corpus.jsonl").is_file():
        return load_beir_corpus(path / "corpus.jsonl", stream=stream)
    if (path / "docs").is_dir():
        return load_folder(path / "docs")
    if path.is_dir():
        return load_folder(path)
    raise DataError(f"{path}: no such dataset or document folder")


def load_dataset(path: str | Path, split: str = "test", queries: int | None = None,
                 corpus: str | Path | None = None) -> Dataset:
    """A dataset folder, ``"sample"`` for the shipped sample, or a question/answer set file (.jsonl, .json: see
    ``load_qa_set``) judged against ``corpus``; ``queries`` keeps the first N judged queries."""
    path = resolve_dataset(path)
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        dataset = load_qa_set(path, load_corpus(corpus) if corpus else None)
        return dataset.subset([q.id for q in dataset.judged()[:queries]]) if queries else dataset
    if not path.is_dir():
        raise DataError(f"{path}: dataset folder not found")
    corpus = load_corpus(path)
    query_list = load_queries(path / "queries.jsonl")
    qrels = load_qrels(path / "qrels" / f"{split}.tsv")
    refs_path = path / "references.jsonl"
    refs = load_references(refs_path, {d.id: d for d in corpus.documents}) if refs_path.is_file() else {}
    dataset = Dataset(path.resolve().name, corpus, query_list, qrels, refs)
    return dataset.subset([q.id for q in dataset.judged()[:queries]]) if queries else dataset


def load_qa_set(path: str | Path, corpus: Corpus | None = None) -> Dataset:
    """A question/answer/context set: ragtune's JSONL (one ``{"question", "answer", "contexts": [...], "id"?,
    "metadata"?}`` per line) or llama-index's LabelledRagDataset JSON (``{"examples": [{"query",
    "reference_answer", "reference_contexts"}, ...]}``). A document of ``corpus`` that contains a reference
    context (whitespace-insensitive) is judged relevant and the context becomes a reference span; without a corpus,
    the distinct contexts are the corpus."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: question/answer set not found")
    examples = list(_qa_examples(path))
    if not examples:
        raise DataError(f"{path}: no examples")
    if corpus is None:
        texts = dict.fromkeys(c for _, _, _, ctxs, _ in examples for c in ctxs)
        docs = [Document(f"ctx-{hashlib.sha256(t.encode()).hexdigest()[:10]}", t) for t in texts]
        corpus = Corpus(docs, 0, str(path))
    flat = {d.id: _flatten(d.text) for d in corpus.documents}
    queries, qrels, refs = [], {}, {}
    for qid, question, answer, contexts, meta in examples:
        queries.append(Query(qid, question, meta, answer))
        for ctx in contexts:
            needle = _flatten(ctx)[0]
            for doc in corpus.documents:
                text, offsets = flat[doc.id]
                at = text.find(needle) if needle else -1
                if at >= 0:
                    qrels.setdefault(qid, {})[doc.id] = 1
                    refs.setdefault(qid, []).append(Span(doc.id, offsets[at], offsets[at + len(needle) - 1] + 1))
    return Dataset(path.stem, corpus, queries, qrels, refs)


def _flatten(text: str) -> tuple[str, list[int]]:
    """``text`` with whitespace runs collapsed to one space, and each kept character's offset in ``text``."""
    out, offsets, space = [], [], False
    for i, ch in enumerate(text):
        if ch.isspace():
            space = bool(out)
            continue
        if space:
            out.append(" ")
            offsets.append(i - 1)
            space = False
        out.append(ch)
        offsets.append(i)
    return "".join(out), offsets


def _qa_examples(path: Path) -> Iterator[tuple[str, str, str | None, list[str], dict]]:
    if path.suffix == ".jsonl":
        ids = _Ids(path)
        for lineno, obj in read_jsonl(path):
            qid = str(obj.get("id", lineno))
            ids.check(qid, lineno)
            contexts = obj.get("contexts", [])
            if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
                raise DataError(f"{path}:{lineno}: field 'contexts' must be a list of strings")
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            yield (qid, _field(obj, "question", path, lineno), _field(obj, "answer", path, lineno, required=False),
                   contexts, meta)
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise DataError(f"{path}: expected a LabelledRagDataset object with an 'examples' list")
    for i, ex in enumerate(data["examples"], 1):
        where = f"{path}: example {i}"
        if not isinstance(ex, dict) or not isinstance(ex.get("query"), str) or not ex["query"].strip():
            raise DataError(f"{where}: missing 'query' text")
        contexts = ex.get("reference_contexts") or []
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DataError(f"{where}: 'reference_contexts' must be a list of strings")
        answer = ex.get("reference_answer")
        yield str(i), ex["query"], answer if isinstance(answer, str) else None, contexts, {}


def resolve_dataset(name: str | Path) -> Path:
    """``"sample"`` names the shipped sample; anything else is a path."""
    return sample_dataset_path() if str(name) == "sample" else Path(name)


def sample_dataset_path() -> Path:
    """The sample corpus shipped with ragtune: a fictional company's handbook with questions and judgments."""
    return Path(__file__).parent / "sample"
