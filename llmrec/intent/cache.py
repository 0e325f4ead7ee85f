"""The parsed-intent cache: an LRU keyed on normalised request text."""

from __future__ import annotations

import threading
from collections import OrderedDict

from llmrec.intent.schema import (
    Intent,
)


class IntentCache:
    """A thread-safe LRU of parsed intents keyed on normalised text."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Intent] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Intent | None:
        with self._lock:
            intent = self._items.get(key)
            if intent is not None:
                self._items.move_to_end(key)
            return intent

    def put(self, key: str, intent: Intent) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = intent
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

