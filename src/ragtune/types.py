"""The record types that flow between stages. Plain frozen dataclasses, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A source document. ``text`` is what is chunked; spans of chunks index into it."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Query:
    """A question; ``answer`` is its reference answer where the dataset has one (for answer correctness)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    answer: str | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``document.text[start:end] == text``."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, best first (``rank`` starts at 1)."""

    chunk_id: str
    doc_id: str
    score: float
    rank: int
    text: str = ""
    start: int = -1
    end: int = -1


@dataclass(frozen=True)
class Answer:
    """A generated answer: ``citations`` are chunk ids (marker [n] in the text names ``citations[n - 1]``, except in
    an OpenAI answer, where [n] names the n-th passage of the prompt); ``usage`` counts prompt and completion tokens;
    a non-empty ``notice`` says the answer is degraded (the generator failed and the passages stand in)."""

    text: str
    citations: tuple[str, ...] = ()
    usage: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    model: str = ""
    prompt: str = ""
    notice: str = ""

    @property
    def degraded(self) -> bool:
        return bool(self.notice)


@dataclass(frozen=True)
class Span:
    """A character span of a document that answers a query (span-level judgments)."""

    doc_id: str
    start: int
    end: int


@dataclass
class IndexInfo:
    key: str
    table: str
    settings: str
    corpus: str
    fingerprint: str
    documents: int
    chunks: int
    built: bool  # False: an existing complete table was reused
    seconds: float
    flagged: int = 0  # chunks the injection scan flagged when they were written (kept from generators)
    text: str = ""  # hash of the settings full-text search depends on (RagConfig.text_settings)
    #: chunks longer than the vector model reads (the rest of each is not in its vector), counted when this run
    #: built the table; None: not counted (a reused table, no vectors, a model without a tokenizer ragtune reads)
    truncated: int | None = None
