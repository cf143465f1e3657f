"""Tokenizing and padding for the encoders: Rust tokenizers loaded from ``tokenizer.json``; token ids held as flat
arrays (``Tokens``) and padded into model inputs by array operations; a pool of tokenizing processes for the GPU
path; cross-encoder pairs assembled from each text's ids, so a query is tokenized once and a passage once per
vocabulary."""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np

from ragtune.errors import BackendError


def load_tokenizer(model_dir: Path, max_length: int = 512):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.no_padding()
    return tok


@functools.lru_cache(maxsize=8)
def _plain_tokenizer(path: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


@dataclass(frozen=True)
class InputWindow:
    """How much of a text an encoder reads: ``max_tokens`` of its own tokens (its special tokens not counted), as
    the ``tokenizer.json`` at ``tokenizer`` counts them. Small and picklable: chunking processes count with it."""

    tokenizer: str
    max_tokens: int

    @classmethod
    def of(cls, tokenizer: Path, max_length: int) -> InputWindow | None:
        """The window of a model reading ``max_length`` tokens, special ones included; None without a tokenizer."""
        if not tokenizer.is_file():
            return None
        specials = len(_plain_tokenizer(str(tokenizer)).encode("", add_special_tokens=True).ids)
        return cls(str(tokenizer), max_length - specials)

    def ids(self, text: str) -> list[int]:
        """``text``'s token ids, no special tokens and no truncation (what a splitter counts)."""
        return self.plain.encode(text, add_special_tokens=False).ids

    def tokens(self, texts: list[str]) -> Tokens:
        """Each text's ids, no special tokens and no truncation (batched, in Rust): its length in tokens, and what
        the model's own tokenizer would make of it (``Frame``)."""
        plain = self.plain
        return Tokens.of(getattr(plain, "encode_batch_fast", plain.encode_batch)(texts, add_special_tokens=False))

    @property
    def plain(self):
        """The tokenizer, without truncation or padding."""
        return _plain_tokenizer(self.tokenizer)


def tokenize(tokenizer, items: list) -> list:
    """Encodings of texts or (query, text) pairs, batched and parallel in Rust; ``encode_batch_fast`` where the
    ``tokenizers`` version has it: the same ids without character offsets, about 15% faster (measured)."""
    return getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)(items)


@dataclass(frozen=True)
class Tokens:
    """The token ids of several inputs, one after another in flat arrays: ``ids`` (int32), ``type_ids`` (segment
    ids, int8: 1 for a pair's second text) and each input's ``lengths``. Padding a batch is then array operations,
    with no Python loop over tokens; the arrays travel between processes at the cost of a copy."""

    ids: np.ndarray
    type_ids: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, encodings: Sequence) -> Tokens:
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
        if any(1 in e.type_ids for e in encodings):  # pairs; single texts are all segment 0
            types = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int8, count=total)
        else:
            types = np.zeros(total, dtype=np.int8)
        return cls(ids, types, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    @cached_property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.starts[i] : self.starts[i] + self.lengths[i]]

    def padded(self, rows: Sequence[int] | np.ndarray | None = None,
               names: Sequence[str] = ("input_ids", "attention_mask", "token_type_ids"),
               pad_id: int = 0) -> dict[str, np.ndarray]:
        """The model inputs ``names`` for the inputs ``rows`` (all by default), right-padded to the longest."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        lengths = self.lengths[rows]
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        at = (self.starts[rows][:, None] + np.arange(mask.shape[1]))[mask]

        def filled(source: np.ndarray, fill: int) -> np.ndarray:
            out = np.full(mask.shape, fill, dtype=np.int64)
            out[mask] = source[at]
            return out

        arrays = {"input_ids": lambda: filled(self.ids, pad_id), "attention_mask": lambda: mask.astype(np.int64),
                  "token_type_ids": lambda: filled(self.type_ids, 0)}
        return {n: arrays[n]() for n in names}

    def to_arrow(self):
        """The ids as an Arrow ``list<int32>`` column, a row per input (segment ids left out: single texts)."""
        import pyarrow as pa

        offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(self.ids, pa.int32()))

    @classmethod
    def from_arrow(cls, column) -> Tokens:
        """``to_arrow``'s column (one chunk or several) back as ``Tokens``, single texts in segment 0."""
        import pyarrow as pa

        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        lengths = column.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        ids = column.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        return cls(ids, np.zeros(len(ids), dtype=np.int8), lengths)

    def take(self, rows: Sequence[int] | np.ndarray) -> Tokens:
        """The inputs ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        at = np.repeat(self.starts[rows], lengths) + _within(lengths)
        return Tokens(self.ids[at], self.type_ids[at], lengths)


def _within(lengths: np.ndarray) -> np.ndarray:
    """Each position's offset inside its row, for rows of ``lengths`` laid one after another."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


@dataclass(frozen=True)
class Frame:
    """How a tokenizer turns a text's ids (no special tokens, no truncation: ``InputWindow.tokens``) into what it
    encodes for the model: the first ``max_tokens`` of them between its special tokens ``head`` and ``tail``. So
    ids counted once (by the chunking processes) feed the model without tokenizing the text again."""

    head: tuple[int, ...]
    tail: tuple[int, ...]
    max_tokens: int

    @classmethod
    def of(cls, tokenizer) -> Frame | None:
        """The frame of ``tokenizer`` (truncating, single texts in segment 0), or None when its encodings are not
        one (no truncation length, or special tokens inside the text's ids)."""
        max_length = (tokenizer.truncation or {}).get("max_length")
        probe = tokenizer.encode("frame probe, 42", add_special_tokens=True)
        bare = tokenizer.encode("frame probe, 42", add_special_tokens=False).ids
        full = probe.ids
        starts = [i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare]
        if not max_length or not starts or any(probe.type_ids):
            return None
        head, tail = tuple(full[: starts[0]]), tuple(full[starts[0] + len(bare) :])
        return cls(head, tail, max_length - len(head) - len(tail))

    def __call__(self, tokens: Tokens) -> Tokens:
        h, t = len(self.head), len(self.tail)
        keep = np.minimum(tokens.lengths, self.max_tokens)
        lengths = keep + h + t
        starts = np.cumsum(lengths) - lengths
        ids = np.empty(int(lengths.sum()), dtype=np.int32)
        offsets = _within(keep)
        ids[np.repeat(starts + h, keep) + offsets] = tokens.ids[np.repeat(tokens.starts, keep) + offsets]
        for j, value in enumerate(self.head):
            ids[starts + j] = value
        for j, value in enumerate(self.tail):
            ids[starts + h + keep + j] = value
        return Tokens(ids, np.zeros(len(ids), dtype=np.int8), lengths)


def encode(tokenizer, items: list) -> Tokens:
    """``items`` (texts or pairs) tokenized in Rust (batched, on all cores) as ``Tokens``."""
    return Tokens.of(tokenize(tokenizer, items))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length, so that padding is small."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# -- a pool of tokenizing processes ---------------------------------------------------------------------------------

_worker_tokenizer = None


def _start_worker(spec: str) -> None:
    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per process: the pool is the parallelism
    from tokenizers import Tokenizer

    _worker_tokenizer = Tokenizer.from_str(spec)


def _encode_in_worker(items: list) -> Tokens:
    return encode(_worker_tokenizer, items)


class TokenizerPool:
    """Tokenizing in ``processes`` worker processes, one core each, for the GPU path: the ids come back as flat
    arrays (``Tokens``), so the process feeding the GPU does no per-token work at all, where tokenizing in its own
    threads left it turning each token into a Python integer under the GIL it needs to launch the model. A worker
    that dies (killed, out of memory) fails the call with a ``BackendError``, and the next call gets fresh workers."""

    def __init__(self, tokenizer, processes: int):
        self.processes, self._spec = processes, tokenizer.to_str()
        self._start()

    def _start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no fork of a process holding CUDA and Rust thread pools
        self._pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_start_worker,
                                         initargs=(self._spec,))

    def map(self, parts: Iterable[list]) -> Iterator[Tokens]:
        """Each part's ``Tokens``, in order; at most two parts per process are tokenized ahead of the caller, so
        memory holds a few parts whatever the input."""
        from concurrent.futures.process import BrokenProcessPool

        pending: deque = deque()
        try:
            for part in parts:
                pending.append(self._pool.submit(_encode_in_worker, part))
                if len(pending) >= 2 * self.processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as exc:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            raise BackendError(f"a tokenizing process ended unexpectedly (killed, or out of memory?): {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def pool_size(device: str) -> int:
    """Tokenizing processes for an encoder on ``device``: on CUDA all cores but the one feeding the GPU (none on a
    host of two cores or fewer, where the threads win); on the CPU none (the model needs the cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores - 1 if device == "cuda" and cores > 2 else 0


# -- cross-encoder pairs from each text's ids -----------------------------------------------------------------------

def vocabulary_digest(tokenizer) -> str:
    """What decides a text's ids (normalizer, pre-tokenizer, model with its vocabulary): tokenizers with the same
    digest give every text the same ids, whatever their special tokens, truncation or padding."""
    spec = json.loads(tokenizer.to_str())
    parts = {k: spec.get(k) for k in ("normalizer", "pre_tokenizer", "model", "added_tokens")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class TextIds:
    """Each text's encoding without special tokens or truncation, kept for the ``keep`` texts used last, one store
    per vocabulary (``vocabulary_digest``) for the process: models that share a vocabulary share the store."""

    _stores: dict[str, TextIds] = {}

    def __init__(self, tokenizer, keep: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.keep, self.encodings, self.lock = keep, OrderedDict(), threading.Lock()

    @classmethod
    def shared(cls, tokenizer, keep: int = 50_000) -> TextIds:
        digest = vocabulary_digest(tokenizer)
        if digest not in cls._stores:
            cls._stores[digest] = cls(tokenizer, keep)
        return cls._stores[digest]

    def get(self, texts: Sequence[str]) -> list:
        with self.lock:  # a service re-ranks in several threads
            found = {t: self.encodings[t] for t in texts if t in self.encodings}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            found.update(zip(missing, self.tokenizer.encode_batch_fast(missing, add_special_tokens=False)))
        with self.lock:
            for t, encoding in found.items():
                self.encodings[t] = encoding
                self.encodings.move_to_end(t)
            while len(self.encodings) > self.keep:
                self.encodings.popitem(last=False)
        return [found[t] for t in texts]


class PairEncoder:
    """(query, text) pairs as ``tokenizer`` encodes them (its truncation, special tokens and segment ids), assembled
    from the query's ids, tokenized once, and each text's, tokenized once per vocabulary (``TextIds``): the same
    ids as ``tokenizer.encode(query, text)``, through the tokenizer's own post-processing. Make one per model and
    keep it: finding its store reads the whole vocabulary (tens of milliseconds)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.texts = tokenizer, TextIds.shared(tokenizer)

    def __call__(self, query: str, texts: Sequence[str]) -> Tokens:
        first, *rest = self.texts.get([query, *texts])
        return Tokens.of([self.tokenizer.post_process(first, e) for e in rest])
