"""Micro-batching of concurrent calls into one backend call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class MicroBatcher:
    """Groups concurrent calls into one batch call (plain threads, no Ray: testable alone).

    Whoever holds the run lock waits up to `wait_s` (or until `max_batch` have queued), then runs
    one batch for the callers queued first; the others wait for their result or for the lock."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int, wait_s: float) -> None:
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self._queue: list[tuple[Any, Future]] = []
        self._cond = threading.Condition()
        self._running = threading.Lock()

    def submit(self, item: Any) -> Any:
        future: Future = Future()
        with self._cond:
            self._queue.append((item, future))
            self._cond.notify_all()
        while not future.done():
            if not self._running.acquire(timeout=0.01):
                continue
            try:
                if future.done():
                    break
                deadline = time.monotonic() + self.wait_s
                with self._cond:
                    while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
                    batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                try:
                    results = self.run([i for i, _ in batch])
                    for (_, f), r in zip(batch, results, strict=True):
                        f.set_result(r)
                except BaseException as error:  # every caller of the batch sees the failure
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(error)
            finally:
                self._running.release()
        return future.result()


