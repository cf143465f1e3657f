"""Span-level scoring of chunkings (the method of Chroma's "Evaluating Chunking Strategies for Retrieval", 2024).

References are exact character spans of the answer. For the top-k retrieved chunks of a query:

- recall: share of reference characters the chunks cover;
- precision: covered reference characters over the characters of all retrieved chunks (overlapping chunks count
  twice: that is what a generator reads);
- IoU: covered / (retrieved characters + reference characters - covered).

For ranking metrics over chunks, a chunk is relevant when it overlaps a reference span.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragtune.types import Hit, Span


def _union(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def span_scores(hits: Sequence[Hit], references: Sequence[Span]) -> dict[str, float]:
    docs = {r.doc_id for r in references} | {h.doc_id for h in hits}
    covered = retrieved = reference = 0
    for doc in docs:
        ref = _union((r.start, r.end) for r in references if r.doc_id == doc)
        got = [(h.start, h.end) for h in hits if h.doc_id == doc]
        covered += _overlap(_union(got), ref)
        retrieved += sum(e - s for s, e in got)
        reference += sum(e - s for s, e in ref)
    return {
        "span_recall": covered / reference if reference else 0.0,
        "span_precision": covered / retrieved if retrieved else 0.0,
        "span_iou": covered / (retrieved + reference - covered) if (retrieved + reference) else 0.0,
    }


def span_qrels(chunks: Iterable[tuple[str, str, int, int]], references: Sequence[Span]) -> dict[str, int]:
    """Chunk-level judgments for one query: 1 for every chunk ``(id, doc_id, start, end)`` of the index that
    overlaps a reference span."""
    return {
        cid: 1
        for cid, doc, start, end in chunks
        if any(r.doc_id == doc and start < r.end and r.start < end for r in references)
    }
