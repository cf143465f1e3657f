"""Micro-batching: concurrent callers of a one-item function share one call of its batched form.

The first caller to arrive becomes the leader: it (optionally waits ``wait_s`` for others to join, then) runs ``fn``
on up to ``max_batch`` items, hands each caller its result, and repeats while items are waiting; followers block
until their item is done. Callers that arrive while a batch runs form the next one, so batches grow with the load
and a lone caller waits for nothing: under load, eight queries cost about one encoder pass instead of eight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence


class MicroBatcher:
    def __init__(self, fn: Callable[[list], Sequence], max_batch: int = 32, wait_s: float = 0.0):
        self.fn, self.max_batch, self.wait_s = fn, max_batch, wait_s
        self._cv = threading.Condition()
        self._pending: list[list] = []
        self._leading = False
        self.calls = 0  # batched calls made (for tests and metrics)

    def __call__(self, item):
        slot = [item, None, None, False]  # item, result, error, done
        with self._cv:
            self._pending.append(slot)
            if self._leading:
                while not slot[3]:
                    self._cv.wait()
                return self._result(slot)
            self._leading = True
        if self.wait_s:
            time.sleep(self.wait_s)  # let concurrent callers join this batch
        while True:
            with self._cv:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                if not batch:
                    self._leading = False
                    break
            try:
                results, error = self.fn([s[0] for s in batch]), None
                self.calls += 1
            except Exception as exc:  # every caller of this batch gets the error
                results, error = [None] * len(batch), exc
            with self._cv:
                for s, r in zip(batch, results):
                    s[1], s[2], s[3] = r, error, True
                self._cv.notify_all()
        return self._result(slot)

    @staticmethod
    def _result(slot):
        if slot[2] is not None:
            raise slot[2]
        return slot[1]
