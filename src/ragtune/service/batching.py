"""Micro-batching: concurrent callers of a one-item function share one call of its batched form.

A caller that finds no batch running becomes the leader: it (optionally waits ``wait_s`` for others to join, then)
runs ``fn`` on up to ``max_batch`` waiting items, oldest first, and hands each caller its result; followers block
until their item is done. Callers that arrive while a batch runs form the next one, so batches grow with the load
and a lone caller waits for nothing: under load, eight queries cost about one encoder pass instead of eight.

A leader stops leading as soon as its own item is done and passes the role to a waiting caller. (Leading until the
queue ran dry made one unlucky request serve everyone else's for as long as requests kept coming: under a steady
load of 8 clients that was the slowest 5% of requests, measured.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence


class _Slot:
    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item):
        self.item, self.result, self.error, self.done = item, None, None, False


class MicroBatcher:
    def __init__(self, fn: Callable[[list], Sequence], max_batch: int = 32, wait_s: float = 0.0):
        self.fn, self.max_batch, self.wait_s = fn, max_batch, wait_s
        self._cv = threading.Condition()
        self._pending: list[_Slot] = []
        self._leading = False
        self.calls = 0  # batched calls made (for tests and metrics)

    def __call__(self, item):
        slot = _Slot(item)
        with self._cv:
            self._pending.append(slot)
            while self._leading and not slot.done:
                self._cv.wait()
            if slot.done:
                return self._result(slot)
            self._leading = True
        try:
            if self.wait_s:
                time.sleep(self.wait_s)  # let concurrent callers join this batch
            while not slot.done:  # more than max_batch ahead of us: serve them first, in order
                with self._cv:
                    batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                try:
                    results, error = self.fn([s.item for s in batch]), None
                    self.calls += 1
                except Exception as exc:  # every caller of this batch gets the error
                    results, error = [None] * len(batch), exc
                with self._cv:
                    for s, r in zip(batch, results):
                        s.result, s.error, s.done = r, error, True
                    self._cv.notify_all()
        finally:
            with self._cv:
                self._leading = False  # a waiting caller whose item is not done takes over
                self._cv.notify_all()
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot):
        if slot.error is not None:
            raise slot.error
        return slot.result
