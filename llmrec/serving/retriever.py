"""The retrieval stage: one FAISS index per scene over the item table, kept current from the store.

Indexes are built once per (catalog content, text version, encoder, index settings) and cached
under LLMREC_HOME/indexes; stored item changes carry their embeddings, so catching up with another
process's writes needs no encoder unless the encoder changed since.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from llmrec.config import PipelineConfig
from llmrec.data.catalog import Catalog
from llmrec.data.items import (
    ItemRecord,
    allow_filter,
    items_from_catalog,
    record_from_change,
)
from llmrec.data.store import ItemChange, Store
from llmrec.errors import NotFoundError, RequestError
from llmrec.index.build import build_scene_indexes, index_dir, index_key, load_scene_indexes
from llmrec.index.lexical import LexicalIndex
from llmrec.index.vector_index import CorruptIndexError, VectorIndex
from llmrec.index.versions import publish_version
from llmrec.serving.encoder import Encoder
from llmrec.serving.schemas import Filters, ItemIn

log = logging.getLogger(__name__)


@dataclass
class Retrieved:
    """Candidates of one scene with what the ranking stage needs: similarity to the request and vectors."""

    item_ids: list[str]
    semantic: np.ndarray
    lexical: np.ndarray  # BM25 of each candidate for the request's lexical text
    vectors: np.ndarray
    titles: list[str]
    attributes: list[dict[str, Any]]


class Retriever:
    """Per-scene ANN search with filters, and the item writes (embed, store, index)."""

    def __init__(
        self,
        config: PipelineConfig,
        catalog: Catalog,
        store: Store,
        encoder: Encoder | Callable[[], Encoder],
        rebuild_index: bool = False,
    ) -> None:
        self.config = config
        self.catalog_name = catalog.name
        self.encoder_id = config.encoder.model
        self._encoder = encoder
        self.items = items_from_catalog(catalog)
        self.scenes = catalog.scenes["scene"].tolist()
        self.indexes = self.load_or_build_indexes(catalog, force=rebuild_index)
        self._texts: dict[str, dict[str, str]] = {scene: {} for scene in self.scenes}  # what BM25 indexes, kept current under the lock
        for item_id, record in self.items.items():
            if record.scene in self._texts:
                self._texts[record.scene][item_id] = record.render()
        self._text_versions = dict.fromkeys(self.scenes, 0)
        self.lexical = {scene: LexicalIndex(texts) for scene, texts in self._texts.items()}
        self._lexical_lock = threading.Lock()  # one BM25 build swaps in at a time
        self.store = store
        self._lock = threading.RLock()  # held by reads too: a follower thread applies writes
        self._syncing = threading.Lock()  # one catch-up with the store at a time
        self._item_seq = 0
        self.sync(from_start=True)

    @property
    def encoder(self) -> Encoder:
        """Loaded on first use: a replica that finds its indexes cached and its writes embedded never needs it."""
        if not isinstance(self._encoder, Encoder):
            self._encoder = self._encoder()
        return self._encoder

    # ---- start-up -------------------------------------------------------------------------
    def load_or_build_indexes(self, catalog: Catalog, force: bool = False) -> dict[str, VectorIndex]:
        """Per-scene indexes from the saved build when its key matches and its files check out, else
        embedded now and published as a new version: a bad build is logged and replaced, never
        served, and no published version is ever written into."""
        directory = index_dir(catalog.name, self.encoder_id)
        key = index_key(self.config, catalog)
        if not force:
            try:
                saved = load_scene_indexes(directory, self.scenes, key, self.config)
            except (CorruptIndexError, ValueError) as error:
                log.warning("the saved index is unusable, rebuilding it: %s", error)
                saved = None
            if saved is not None:
                return saved
        records = list(self.items.values())
        vectors = [
            self.encoder.encode([r.render() for r in records[start : start + 1024]])
            for start in tqdm(range(0, len(records), 1024), desc="embedding the catalog", unit="batch", disable=not records)
        ]
        vectors = np.concatenate(vectors) if vectors else np.zeros((0, self.encoder.dim), dtype=np.float32)
        indexes, metadata = build_scene_indexes(self.config, catalog, [r.item_id for r in records], [r.scene for r in records], vectors)
        publish_version(directory, indexes, metadata, {"catalog": catalog.name, "encoder": self.encoder_id, "items": len(records), "built_by": "serving", "key": key})
        return indexes

    def text_vectors(self, kind: str, texts: dict[str, str]) -> np.ndarray:
        """Vectors of a few fixed texts (the router's scene descriptions, the scenes' category values),
        cached beside the indexes as `kind`.json: a replica whose indexes and these are cached never
        loads the encoder."""
        path = index_dir(self.catalog_name, self.encoder_id) / f"{kind}.json"
        key = {"texts": texts, "encoder": self.encoder_id, "dtype": self.config.encoder.dtype}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return np.asarray(saved["vectors"], dtype=np.float32)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.encoder.encode(list(texts.values()))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "vectors": vectors.tolist()}))
        partial.replace(path)  # atomic: a reader sees the old file or the new one
        return vectors

    # ---- writes ---------------------------------------------------------------------------
    def sync(self, rebuild_lexical: bool = True, from_start: bool = False) -> int:
        """Apply every item change in the store not yet seen here (by this or any other process). The
        store is read, and items stored without a usable embedding are embedded, outside the index
        lock, so a slow or absent store never holds up searches; the BM25 index of each changed scene
        is then rebuilt outside the lock too. The Ranker's catch-up before a request passes
        `rebuild_lexical=False`: a request never pays for a rebuild, which the write that made the
        change (or the replica's follower, within a sync interval) does instead. `from_start` (a new
        replica) reads the log compacted, each item's latest change only."""
        with self._syncing:
            if from_start:
                upto = self.store.last_sequence("item_log")
                changes = self.store.latest_item_changes(upto)
            else:
                changes = self.store.item_changes(self._item_seq)
                upto = changes[-1].seq if changes else self._item_seq
            stale = [c for c in changes if c.op == "upsert" and not self._usable(c)]
            fresh = dict(zip((c.seq for c in stale), self.encoder.encode([record_from_change(c).render() for c in stale]))) if stale else {}
            with self._lock:
                touched: set[str] = set()
                for change in changes:
                    if change.op == "delete":
                        touched |= self._drop(change.item_id)
                    else:
                        touched |= self._put(record_from_change(change), fresh.get(change.seq, change.embedding))
                self._item_seq = upto
                for scene in touched:
                    self._text_versions[scene] += 1
                outdated = [s for s in self.scenes if self._text_versions[s] > self.lexical[s].version]
                snapshots = {scene: (dict(self._texts[scene]), self._text_versions[scene]) for scene in outdated} if rebuild_lexical else {}
        for scene, (texts, version) in snapshots.items():
            built = LexicalIndex(texts, version)
            with self._lexical_lock:
                if built.version > self.lexical[scene].version:  # a slower build of older texts never replaces a newer one
                    self.lexical[scene] = built
        return len(changes)

    def _usable(self, change: ItemChange) -> bool:
        dim = next(iter(self.indexes.values())).dim if self.indexes else None
        return change.encoder == self.encoder_id and change.embedding is not None and len(change.embedding) == dim

    def _put(self, record: ItemRecord, vector: np.ndarray) -> set[str]:
        """Index one stored item; returns the scenes whose texts changed."""
        if record.scene not in self.indexes:  # a stored item of a scene this catalog no longer has
            log.warning("skipping stored item %s: scene %r is not in the catalog", record.item_id, record.scene)
            return set()
        touched = {record.scene}
        old = self.items.get(record.item_id)
        if old is not None and old.scene != record.scene:
            self.indexes[old.scene].remove([record.item_id])
            self._texts[old.scene].pop(record.item_id, None)
            touched.add(old.scene)
        self.indexes[record.scene].upsert([record.item_id], vector)
        self._texts[record.scene][record.item_id] = record.render()
        self.items[record.item_id] = record
        return touched

    def _drop(self, item_id: str) -> set[str]:
        record = self.items.pop(item_id, None)
        if record is None:
            return set()
        self.indexes[record.scene].remove([item_id])
        self._texts[record.scene].pop(item_id, None)
        return {record.scene}

    def check_scene(self, scene: str) -> str:
        if scene not in self.indexes:
            raise NotFoundError(f"unknown scene {scene!r}; known scenes: {self.scenes}")
        return scene

    def add_items(self, items: Sequence[ItemIn], vectors: np.ndarray | None = None) -> list[str]:
        """Store durably (with embeddings), then index: each item is recommendable when this returns.

        `vectors` lets a caller that already embedded the items (the Serve Encoder) skip a second pass.
        """
        if not items:
            raise RequestError("no items given: send at least one")
        for item in items:
            self.check_scene(item.scene)
        if len({i.item_id for i in items}) != len(items):
            raise RequestError("the same item_id appears twice in one batch")
        now = int(time.time())
        records = [ItemRecord(i.item_id, i.scene, i.title, i.text, dict(i.attributes), now) for i in items]
        if vectors is None:
            vectors = self.encoder.encode([r.render() for r in records])
        self.store.upsert_items(
            ItemChange(0, r.item_id, "upsert", r.scene, r.title, r.text, r.attributes, r.created_at, self.encoder_id, v)
            for r, v in zip(records, vectors)
        )
        self.sync()
        return [r.item_id for r in records]

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        self.sync()
        unknown = [i for i in item_ids if i not in self.items]
        if unknown:
            raise NotFoundError(f"unknown item ids: {unknown[:10]}")
        self.store.delete_items(item_ids)
        self.sync()
        return list(item_ids)

    # ---- reads ----------------------------------------------------------------------------
    def search(
        self,
        scene: str,
        vector: np.ndarray | None,
        n: int,
        excluded: Sequence[str] = (),
        filters: Filters | None = None,
        extra_ids: Sequence[str] = (),
        text: str = "",
    ) -> Retrieved:
        """Hybrid retrieval: the `n` nearest items of the scene to the vector, the `n` best BM25 matches
        of `text`, `extra_ids` (e.g. collaborative candidates) and every item of the filters'
        shortlist, all passing the exclusions and filters (as of the last sync)."""
        with self._lock:
            index = self.indexes[self.check_scene(scene)]
            allow = allow_filter(self.items, excluded, filters or Filters())
            ids = [i for i, _ in index.search(vector, n, allow)] if vector is not None else []
            match = self.lexical[scene].query(text)  # the scene's latest built BM25 (a rebuild may be under way)
            lexical_ids = match.top(n, allow, self.config.index.max_examined) if text else []
            seen = set(ids)
            shortlist = filters.item_ids if filters is not None else []  # a shortlist is ranked whole
            ids += [i for i in dict.fromkeys([*lexical_ids, *extra_ids, *shortlist]) if i not in seen and i in index and allow(i)]
            vectors = index.vectors(ids) if ids else np.zeros((0, index.dim), dtype=np.float32)
            titles, attributes = [self.items[i].title for i in ids], [self.items[i].attributes for i in ids]
            bm25 = match.scores(ids)
        semantic = vectors @ np.asarray(vector, dtype=np.float32) if vector is not None else np.zeros(len(ids), dtype=np.float32)
        return Retrieved(ids, semantic, bm25, vectors, titles, attributes)

    def toward(self, scene: str, vector: np.ndarray | None, item_ids: Sequence[str]) -> np.ndarray | None:
        """The query's vector moved to the named items' mean ("like Se7en" searches near Seven), normalised."""
        with self._lock:
            index = self.indexes[self.check_scene(scene)]
            ids = [i for i in item_ids if i in index]
            if not ids:
                return vector
            target = index.vectors(ids).mean(axis=0)
        combined = target if vector is None else np.asarray(vector, dtype=np.float32).ravel() + target
        return (combined / (np.linalg.norm(combined) or 1.0)).astype(np.float32)

    def scene_sizes(self) -> dict[str, int]:
        with self._lock:
            return {s: len(i) for s, i in self.indexes.items()}
