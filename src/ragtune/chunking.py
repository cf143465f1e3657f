"""Chunking with llama-index node parsers. Every chunk keeps its document id and its character span in it.

Registry names: ``sentence`` and ``token`` (fixed token budgets, sentence- or token-aligned), ``markdown`` (one chunk
per section, long sections split by sentences) and ``semantic`` (split where neighbouring sentences drift apart in
embedding space, long pieces split by sentences). ``size`` and ``overlap`` are in tokens: llama-index's default
(tiktoken cl100k_base), or the embedder's own with ``tokenizer: embedder`` (``counting_window``), so that no chunk is
longer than the model reads.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence

from ragtune.errors import ConfigError
from ragtune.llama_offline import offline_llama_index
from ragtune.registry import CHUNKERS
from ragtune.types import Chunk, Document

Span = tuple[int, int, dict]  # start, end, metadata
Splitter = Callable[[Sequence[Document]], dict[str, list[Span]]]
Tokenizer = Callable[[str], list] | None  # what a llama-index splitter counts tokens with (None: its default)


def _nodes_to_spans(documents: Sequence[Document], nodes, offsets: dict[str, tuple] | None = None) -> dict[str, list[Span]]:
    """Group parsed nodes by document and turn them into verified character spans of the document text."""
    by_id = {d.id: d for d in documents}
    spans: dict[str, list[Span]] = {d.id: [] for d in documents}
    cursor: dict[str, int] = {}
    for node in nodes:
        key = node.ref_doc_id
        parent_id, base, meta = (key, 0, dict(node.metadata)) if offsets is None else offsets[key]
        text = by_id[parent_id].text
        content = node.get_content()
        start = node.start_char_idx
        if start is None or text[base + start : base + start + len(content)] != content:
            found = text.find(content, cursor.get(parent_id, base))
            start = (found if found >= 0 else text.find(content)) - base
        if start + base < 0 or not content.strip():
            continue  # a parser that rewrote the text; never invent a span
        begin = base + start
        spans[parent_id].append((begin, begin + len(content), meta))
        cursor[parent_id] = begin + 1
    return spans


def _quiet_parse(parser, documents) -> list:
    """llama-index prints a warning for chunk sizes under about 50 tokens, on the grounds that metadata may fill
    them; ragtune gives its splitters no metadata, so the warning does not apply and is kept off stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return parser.get_nodes_from_documents(documents)


def _parse(parser, documents: Sequence[Document]) -> dict[str, list[Span]]:
    from llama_index.core import Document as LlamaDocument

    nodes = _quiet_parse(parser, [LlamaDocument(text=d.text, id_=d.id) for d in documents])
    return _nodes_to_spans(documents, nodes)


def _refine(spans: dict[str, list[Span]], documents: Sequence[Document], config, tokenizer: Tokenizer
            ) -> dict[str, list[Span]]:
    """Split pieces longer than ``config.size`` tokens with the sentence splitter, keeping document offsets."""
    from llama_index.core import Document as LlamaDocument
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=config.size, chunk_overlap=config.overlap, tokenizer=tokenizer)
    by_id = {d.id: d for d in documents}
    pieces, offsets = [], {}
    for doc_id, doc_spans in spans.items():
        for i, (start, end, meta) in enumerate(doc_spans):
            key = f"{doc_id}\0{i}"
            offsets[key] = (doc_id, start, meta)
            pieces.append(LlamaDocument(text=by_id[doc_id].text[start:end], id_=key))
    return _nodes_to_spans(documents, _quiet_parse(splitter, pieces), offsets)


@CHUNKERS.register("sentence")
def _sentence(config, embedder=None, tokenizer: Tokenizer = None) -> Splitter:
    from llama_index.core.node_parser import SentenceSplitter

    parser = SentenceSplitter(chunk_size=config.size, chunk_overlap=config.overlap, tokenizer=tokenizer)
    return lambda docs: _parse(parser, docs)


@CHUNKERS.register("token")
def _token(config, embedder=None, tokenizer: Tokenizer = None) -> Splitter:
    from llama_index.core.node_parser import TokenTextSplitter

    parser = TokenTextSplitter(chunk_size=config.size, chunk_overlap=config.overlap, tokenizer=tokenizer)
    return lambda docs: _parse(parser, docs)


@CHUNKERS.register("markdown")
def _markdown(config, embedder=None, tokenizer: Tokenizer = None) -> Splitter:
    from llama_index.core.node_parser import MarkdownNodeParser

    parser = MarkdownNodeParser(include_metadata=True, include_prev_next_rel=False)
    return lambda docs: _refine(_parse(parser, docs), docs, config, tokenizer)


@CHUNKERS.register("semantic")
def _semantic(config, embedder=None, tokenizer: Tokenizer = None) -> Splitter:
    from llama_index.core.node_parser import SemanticSplitterNodeParser

    if embedder is None:
        raise ValueError("semantic chunking needs an embedder")
    parser = SemanticSplitterNodeParser(
        buffer_size=0,  # compare sentences themselves: a window smears the breakpoint one sentence late
        breakpoint_percentile_threshold=config.breakpoint_percentile,
        embed_model=llama_embedding(embedder),
        include_metadata=False,
        include_prev_next_rel=False,
    )
    return lambda docs: _refine(_parse(parser, docs), docs, config, tokenizer)


def llama_embedding(embedder):
    """Expose a ragtune ``CachedEmbedder`` as a llama-index embedding model (cache included)."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class _Adapter(BaseEmbedding):
        _inner = PrivateAttr()

        def __init__(self, inner):
            super().__init__(model_name=inner.model_id, embed_batch_size=2048)
            self._inner = inner

        def _get_text_embeddings(self, texts):
            return self._inner.embed_documents(texts).tolist()

        def _get_text_embedding(self, text):
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query):
            return self._inner.embed_queries([query])[0].tolist()

        async def _aget_query_embedding(self, query):
            return self._get_query_embedding(query)

        async def _aget_text_embedding(self, text):
            return self._get_text_embedding(text)

    return _Adapter(embedder)


def counting_window(config, embedder):
    """The embedder's input window (``ragtune.models.tokens.InputWindow``) when chunk sizes count its tokens
    (``tokenizer: embedder``), else None. A ``ConfigError`` when the embedder has no tokenizer ragtune can read, or
    ``size`` is more than the model reads (the rest of every full chunk would never be embedded)."""
    if config.tokenizer != "embedder":
        return None
    window = embedder.window
    if window is None:
        raise ConfigError(f"chunking.tokenizer: embedder, but the embedder {embedder.model_id} has no tokenizer "
                          "ragtune can count with; leave chunking.tokenizer unset")
    if config.size > window.max_tokens:
        raise ConfigError(f"chunking.size: {config.size} tokens is more than the embedder {embedder.model_id} reads "
                          f"({window.max_tokens} tokens besides its special ones); use at most {window.max_tokens}")
    return window


def chunk_documents(documents: Sequence[Document], config, embedder=None, window=None) -> list[Chunk]:
    """Split documents into chunks; ids are ``<doc id>#<n>`` in document order. ``window``: the ``counting_window``
    that sizes count (None: llama-index's default tokens)."""
    offline_llama_index()
    split = CHUNKERS.lookup(config.strategy)[0](config, embedder, None if window is None else window.ids)
    spans = split(list(documents)) if documents else {}
    chunks = []
    for doc in documents:
        for n, (start, end, meta) in enumerate(spans.get(doc.id, [])):
            chunks.append(Chunk(f"{doc.id}#{n}", doc.id, doc.text[start:end], start, end, meta))
    return chunks
