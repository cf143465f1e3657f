"""Transformer encoders under torch, fed so that a GPU does not wait and does not run out of memory.

- Inputs are tokenized chunks ahead of the model: on a CUDA host with more than two cores by a pool of tokenizing
  processes (``ragtune.models.tokens.TokenizerPool``: the ids come back as flat arrays, so this process does no
  per-token work), else by the Rust tokenizer (batched, parallel) in two background threads. Each batch is padded
  by array operations into pinned memory and copied to the GPU asynchronously.
- Inputs are sorted by length (by characters, then by tokens within each chunk), so batches carry little padding.
- On CUDA a batch is sized in tokens from the free memory: a probe batch at the model's longest input measures the
  bytes one token costs, and a batch may use ``memory_share`` of what is free. A CUDA out-of-memory splits the batch
  in two, sizes the batches after it to at most half its tokens and goes on, so a large corpus slows down instead of
  killing a sweep. On the CPU a batch is ``batch_size`` inputs.
- Outputs stay on the device until the call ends: one copy back, no synchronisation per batch.
- Attention runs on the flash, memory-efficient or math kernels: torch's default choice on an H200 paid a per-shape
  set-up that made re-ranking one query's passages take 60 ms at the median and over 600 ms at times (12.8 ms after).
- Small inputs (one chunk: a query's passages) are tokenized in the calling thread, unpinned: no thread to wait for.
  Inputs may come tokenized (``Tokens``: a cross-encoder's pairs assembled from each text's ids).
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property

import numpy as np

from ragtune.errors import BackendError
from ragtune.models.tokens import Tokens, TokenizerPool, encode, pool_size

MAX_ROWS = 1024  # the best of 256, 512 and 1024 for the raw forward on an H200 (BENCHMARKS.md)
CHUNK = 1024  # inputs tokenized at once, ahead of the model
PRODUCERS = 2  # tokenizing threads: one tokenizes (in Rust, outside the GIL) while the other pads its chunk
PREFETCH = 8  # padded batches waiting for the model


ATTENTION_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")  # None: torch's own choice


def attention_kernels(device: str):
    """On CUDA, scaled-dot-product attention limited to ``ATTENTION_BACKENDS``."""
    import contextlib

    if device != "cuda" or ATTENTION_BACKENDS is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, name) for name in ATTENTION_BACKENDS])


def out_of_memory_error() -> type[BaseException]:
    import torch

    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class EncoderRunner:
    """Runs ``forward(features) -> tensor[batch, ...]`` over many inputs (texts or (query, text) pairs).

    ``tokenizer`` is a ``tokenizers.Tokenizer`` with truncation at ``max_length`` and no padding; ``names`` are the
    model inputs to build from its encodings; ``processes``: tokenizing processes for large inputs (default
    ``pool_size(device)``; 0: threads).
    """

    def __init__(self, forward: Callable, tokenizer, names: Sequence[str], device: str, batch_size: int,
                 max_length: int, pad_id: int = 0, memory_share: float = 0.5, processes: int | None = None):
        self.forward, self.tokenizer, self.names, self.device = forward, tokenizer, list(names), device
        self.batch_size, self.max_length, self.pad_id, self.memory_share = batch_size, max_length, pad_id, memory_share
        self.processes = pool_size(device) if processes is None else processes

    @cached_property
    def pool(self) -> TokenizerPool:
        return TokenizerPool(self.tokenizer, self.processes)

    @cached_property
    def token_budget(self) -> int | None:
        """Tokens per batch on CUDA (None on the CPU: ``batch_size`` inputs)."""
        if self.device != "cuda":
            return None
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        rows = 8
        probe = {n: torch.ones((rows, self.max_length), dtype=torch.long, device="cuda") for n in self.names}
        if "attention_mask" in probe:  # some padding, as real batches have: the model then builds a full mask
            probe["attention_mask"][::2, -1] = 0
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode(), attention_kernels(self.device):
            self.forward(probe)
        torch.cuda.synchronize()
        per_token = max(1.0, (torch.cuda.max_memory_allocated() - before) / (rows * self.max_length))
        return max(self.max_length, int(self.memory_share * free / per_token))

    def rows_for(self, width: int) -> int:
        budget = self.token_budget
        if budget is None:
            return self.batch_size
        return max(1, min(MAX_ROWS, budget // max(width, 1)))

    def run(self, items: Sequence | Tokens) -> np.ndarray:
        """float32 outputs, one row per input (a text, a pair, or a row of ``Tokens``), in input order."""
        import torch

        if not len(items):
            return np.zeros((0,), dtype=np.float32)
        self.token_budget  # measured before the producer starts, so batches are sized from the first one
        stop = threading.Event()
        if isinstance(items, Tokens):
            chunks = [np.arange(len(items))]
        else:
            order = np.argsort([-_chars(x) for x in items], kind="stable")
            chunks = [order[i : i + CHUNK] for i in range(0, len(order), CHUNK)]

        def tokenized(part: list[np.ndarray]) -> Iterator[tuple[np.ndarray, Tokens]]:
            return ((c, encode(self.tokenizer, [items[i] for i in c])) for c in part)

        if len(chunks) == 1:  # a query's passages, a small block: tokenized here, no thread to start and wait for
            batches: queue.Queue = queue.Queue()
            self._produce([(chunks[0], items)] if isinstance(items, Tokens) else tokenized(chunks), batches, stop)
            producers = []
        else:
            batches = queue.Queue(maxsize=PREFETCH)
            pin = self.device == "cuda"
            if self.processes:  # one thread pads what the pool tokenizes
                parts = [zip(chunks, self.pool.map([items[i] for i in c] for c in chunks))]
            else:
                parts = [tokenized(chunks[k::PRODUCERS]) for k in range(min(PRODUCERS, len(chunks)))]
            producers = [threading.Thread(target=self._produce, args=(part, batches, stop, pin), daemon=True)
                         for part in parts]
            for p in producers:
                p.start()
        done: list[tuple[np.ndarray, torch.Tensor]] = []
        try:
            finished = 0
            while finished < max(1, len(producers)):
                batch = batches.get()
                if batch is None:
                    finished += 1
                    continue
                if isinstance(batch, BaseException):
                    raise batch
                idx, features = batch
                features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
                done.extend(self._forward(idx, features))
        finally:
            stop.set()
            while any(p.is_alive() for p in producers):  # unblock producers waiting on a full queue
                try:
                    batches.get(timeout=0.05)
                except queue.Empty:
                    pass
        outputs = torch.cat([out for _, out in done]).float().cpu().numpy()
        result = np.empty_like(outputs)
        result[np.concatenate([idx for idx, _ in done])] = outputs
        return result

    def _forward(self, idx: np.ndarray, features: dict) -> list:
        import torch

        try:
            with torch.inference_mode(), attention_kernels(self.device):
                return [(idx, self.forward(features))]
        except out_of_memory_error():
            pass  # retried below, outside the handler: the exception's frames hold the failed batch's activations
        if len(idx) == 1:
            raise BackendError("out of GPU memory even for a single input")
        if self.device == "cuda":
            gc.collect()  # frames of the failed forward can sit in reference cycles
            torch.cuda.empty_cache()
        half = len(idx) // 2
        if self.token_budget is not None:  # later batches: at most half the tokens of the one that failed
            failed = len(idx) * int(next(iter(features.values())).shape[1])
            self.token_budget = max(1, min(self.token_budget, failed) // 2)
        else:
            self.batch_size = max(1, min(self.batch_size, len(idx)) // 2)
        return (self._forward(idx[:half], {k: v[:half] for k, v in features.items()})
                + self._forward(idx[half:], {k: v[half:] for k, v in features.items()}))

    def _produce(self, jobs: Iterable[tuple[np.ndarray, Tokens]], batches: queue.Queue, stop: threading.Event,
                 pin: bool = False) -> None:
        """Pad each job's tokens (the inputs ``chunk`` of ``run``'s items) into ``batches``; ``pin``: in
        page-locked memory, so that the copy to the GPU overlaps the model (worth it only ahead of the model: pinning
        a lone batch costs more than it saves)."""
        import torch

        try:
            for chunk, tokens in jobs:
                local = np.argsort(-tokens.lengths, kind="stable")
                at = 0
                while at < len(local):
                    rows = local[at : at + self.rows_for(int(tokens.lengths[local[at]]))]
                    at += len(rows)
                    features = {k: torch.from_numpy(v) for k, v in tokens.padded(rows, self.names, self.pad_id).items()}
                    if pin:
                        features = {k: v.pin_memory() for k, v in features.items()}
                    if stop.is_set():
                        return
                    batches.put((chunk[rows], features))
            batches.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            batches.put(exc)


def _chars(item) -> int:
    return len(item) if isinstance(item, str) else sum(len(x) for x in item)
