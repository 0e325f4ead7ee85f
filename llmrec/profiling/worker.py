"""Background profiling: items written without a title of their own get their profile in place.

Such an item is recommendable the moment it is written (its text's first sentence stands in for a
title). The worker follows the store's item log like every replica does, profiles the items that
still need it (`needs_profile`), and appends each one again with its profile joined; every
replica then re-embeds and re-indexes it on its next sync. The log is the only queue: a worker
that restarts reads it from the start and finds the same work, so nothing is lost, and one that
is not running only delays the titles. Run one worker per store (the Profiler deployment has one
replica), or several profile the same items.

A client's write always wins: the profile is appended only while the change it was written for is
still the item's latest, checked by the store in the write's own transaction
(`Store.upsert_items_if_latest`); an item changed meanwhile is profiled again from its new state if
that needs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from llmrec.config import ProfilingConfig
from llmrec.data.store import ItemChange, Store
from llmrec.data.text import PROFILE_ATTRIBUTE
from llmrec.profiling.profile import ItemSource, apply_profile, needs_profile
from llmrec.profiling.profiler import Profiler

log = logging.getLogger(__name__)


def _profile_key(change: ItemChange) -> str | None:
    profile = (change.attributes or {}).get(PROFILE_ATTRIBUTE)
    return profile.get("key") if isinstance(profile, dict) else None


class ProfileWorker:
    def __init__(self, store: Store, config: ProfilingConfig, make_profiler: Callable[[], Profiler] | None = None) -> None:
        self.store, self.config = store, config
        self._make_profiler = make_profiler or (lambda: Profiler(config))
        self._profiler: Profiler | None = None  # the model loads on the first item that needs it
        self.after = 0  # the last log sequence number read
        self.pending: dict[str, ItemChange] = {}  # item id -> its latest change, while that still needs a profile
        self.unreadable: set[tuple[str, int]] = set()  # (item id, seq) whose answer could not be read: not tried again until the item changes
        self.failed: str | None = None  # why the model could not load: the worker then stops (items keep their stand-in titles)
        self.lock = threading.Lock()

    def _follow(self) -> list[ItemChange]:
        changes = self.store.item_changes(self.after)
        for change in changes:
            if change.op == "upsert" and needs_profile(change.attributes or {}):
                self.pending[change.item_id] = change
            else:
                self.pending.pop(change.item_id, None)
            self.after = max(self.after, change.seq)
        return changes

    def step(self) -> int:
        """Profile up to one batch of the items that need it; returns how many were written back."""
        with self.lock:
            self._follow()
            batch = [c for c in self.pending.values() if (c.item_id, c.seq) not in self.unreadable][: self.config.batch_size]
            if not batch or self.failed:
                return 0
            if self._profiler is None:
                try:
                    self._profiler = self._make_profiler()
                except Exception as error:  # a missing or broken model: said once, not retried every poll
                    self.failed = f"{type(error).__name__}: {error}"
                    log.error("background profiling is off: the profiling model could not load (%s)", self.failed)
                    return 0
            try:
                profiles = self._profiler.profile([ItemSource(c.item_id, c.scene, c.title, c.text, c.attributes or {}) for c in batch])
            except Exception:  # e.g. out of memory: these items are set aside, the rest of the queue goes on
                log.exception("profiling %d items failed; they keep their stand-in titles until they change", len(batch))
                self.unreadable.update((c.item_id, c.seq) for c in batch)
                return 0
            writes = []
            for change, profile in zip(batch, profiles, strict=True):
                if profile is None:
                    self.unreadable.add((change.item_id, change.seq))
                else:
                    title, attributes = apply_profile(change.scene, change.title, change.attributes or {}, profile)
                    writes.append((ItemChange(0, change.item_id, "upsert", change.scene, title, change.text, attributes, change.created_at), change.seq))
            if not writes:
                return 0
            self.store.upsert_items_if_latest(writes)  # an item a client changed meanwhile keeps the client's version
            keys = {change.item_id: change.attributes[PROFILE_ATTRIBUTE]["key"] for change, _ in writes}
            written = sum(1 for c in self._follow() if keys.get(c.item_id) is not None and _profile_key(c) == keys[c.item_id])
            return written
