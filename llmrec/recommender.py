"""The in-process recommender: one object that answers requests and takes writes.

A request flows encode → route → retrieve (ANN by text, plus collaborative candidates for users
with history) → rerank (blend + MMR) → reasons. Writes (items, events) go to the Store first and
reach memory through `sync()`, the same path another process's writes take.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from llmrec.catalog import Catalog, load_catalog
from llmrec.collab import ItemItemModel, Popularity
from llmrec.config import PipelineConfig, llmrec_home
from llmrec.encoder import Encoder
from llmrec.errors import NotFoundError, RequestError
from llmrec.index import VectorIndex, read_index_meta
from llmrec.rerank import Candidate, Reranker
from llmrec.router import SceneRouter
from llmrec.schemas import EventIn, Filters, ItemIn, RecommendedItem, RecommendRequest, RecommendResponse
from llmrec.store import EventRecord, ItemChange, Store, default_store_path
from llmrec.text import TEXT_VERSION, render_item, render_user

log = logging.getLogger(__name__)

PROFILE_TEXT_EXCLUDE = {"zip_code"}  # identifiers, not taste
EVENT_RATINGS = {"like": 5.0, "purchase": 5.0, "dislike": 1.0}
LIKED_TITLES_IN_TEXT = 10
NEW_ITEM_SECONDS = 30 * 24 * 3600
_OPAQUE_ID = ("m.", "g.")  # Freebase ids: facts pointing at them say nothing to a language model


@dataclass
class ItemRecord:
    item_id: str
    scene: str
    title: str
    text: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        return render_item(self.scene, self.title, self.attributes, self.text, self.facts)


@dataclass
class HistoryEntry:
    item_id: str
    rating: float | None
    timestamp: int
    kind: str = "rating"


class Histories:
    """Every user's interactions in time order: the catalog's (kept as arrays, cheap to load) plus
    the events recorded since (kept as entries)."""

    def __init__(self, interactions: pd.DataFrame) -> None:
        ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
        codes, users = pd.factorize(ordered["user_id"])
        bounds = np.flatnonzero(np.diff(codes)) + 1
        starts = np.concatenate([[0], bounds]).tolist() if len(codes) else []
        ends = np.concatenate([bounds, [len(codes)]]).tolist() if len(codes) else []
        self._slices = {u: (a, b) for u, a, b in zip(users.tolist(), starts, ends)}
        self._items = ordered["item_id"].to_numpy(dtype=object)
        self._ratings = ordered["rating"].to_numpy(dtype=np.float64)
        self._times = ordered["timestamp"].to_numpy(dtype=np.int64)
        self._recent: dict[str, list[HistoryEntry]] = defaultdict(list)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._slices or user_id in self._recent

    def add(self, user_id: str, entry: HistoryEntry) -> None:
        self._recent[user_id].append(entry)

    def get(self, user_id: str) -> list[HistoryEntry]:
        start, end = self._slices.get(user_id, (0, 0))
        base = [
            HistoryEntry(i, float(r), int(t))
            for i, r, t in zip(self._items[start:end], self._ratings[start:end], self._times[start:end])
        ]
        return base + self._recent.get(user_id, [])


def _comparable(value: Any) -> Any:
    """Numbers compare as numbers (10 == 10.0), everything else as lower-case text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return str(value).lower()


def item_matches(attributes: dict[str, Any], filters: Filters) -> bool:
    """True when the item satisfies every attribute and range constraint."""
    for key, wanted in filters.attributes.items():
        have = attributes.get(key)
        have_set = {_comparable(v) for v in (have if isinstance(have, list) else [have])} if have is not None else set()
        wanted_set = {_comparable(v) for v in (wanted if isinstance(wanted, list) else [wanted])}
        if not have_set & wanted_set:
            return False
    for key, bounds in filters.ranges.items():
        value = attributes.get(key)
        if not isinstance(value, (int, float)):
            return False
        if (bounds.min is not None and value < bounds.min) or (bounds.max is not None and value > bounds.max):
            return False
    return True


def catalog_fingerprint(catalog: Catalog) -> str:
    """Changes whenever an item's indexed content changes; keys the on-disk index cache."""
    digest = hashlib.sha256()
    for row in catalog.items[["item_id", "scene", "title", "text", "attributes"]].itertuples(index=False):
        digest.update("\x1f".join(row).encode())
    digest.update(pd.util.hash_pandas_object(catalog.kg, index=False).values.tobytes())
    return digest.hexdigest()[:16]


def index_dir(catalog_name: str, encoder_id: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)
    return llmrec_home() / "indexes" / catalog_name / slug


class Recommender:
    """Cold-start-aware, multi-scene recommendations over one catalog."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        catalog: Catalog | None = None,
        encoder: Encoder | None = None,
        store: Store | None = None,
        rebuild_index: bool = False,
    ) -> None:
        self.config = config or PipelineConfig()
        catalog = catalog if catalog is not None else load_catalog(self.config.catalog)
        self.catalog_name = catalog.name
        self.encoder = encoder or Encoder(self.config.encoder)
        self.reranker = Reranker(self.config.rerank)
        self.items = self._items_from(catalog)
        self.scene_names = dict(zip(catalog.scenes["scene"], catalog.scenes["name"]))
        scene_texts = {s: f"{n}: {d}" for s, n, d in catalog.scenes[["scene", "name", "description"]].itertuples(index=False)}
        self.router = SceneRouter(scene_texts, self.encoder.encode(list(scene_texts.values())), self.config.router.default_scene)
        self.indexes = self.load_or_build_indexes(catalog, force=rebuild_index)
        self.profiles = {u: json.loads(a) for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}
        self.histories = Histories(catalog.interactions)
        self.collab = self._fit_collab(catalog)
        self.popularity = Popularity(catalog.interactions)
        self.store = store or Store(self.config.store.url or default_store_path(self.catalog_name))
        self._sync_lock = threading.Lock()
        self._item_seq = 0
        self._event_seq = 0
        self.sync()

    # ---- start-up -------------------------------------------------------------------------
    @staticmethod
    def _items_from(catalog: Catalog) -> dict[str, ItemRecord]:
        facts: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for item_id, relation, obj in catalog.kg.itertuples(index=False):
            if not obj.startswith(_OPAQUE_ID):
                facts[item_id].append((relation, obj))
        return {
            row.item_id: ItemRecord(row.item_id, row.scene, row.title, row.text, json.loads(row.attributes), int(row.created_at), facts.get(row.item_id, []))
            for row in catalog.items.itertuples(index=False)
        }

    def _index_key(self, catalog: Catalog) -> dict[str, Any]:
        """Everything that changes what an index holds: a saved index is reused only if all of it matches."""
        encoder = self.config.encoder
        return {
            "catalog_fingerprint": catalog_fingerprint(catalog),
            "text_version": TEXT_VERSION,
            "encoder": self.encoder.model_id,
            "encoder_dtype": encoder.dtype,
            "encoder_max_seq_length": encoder.max_seq_length,
            "index_kind": self.config.index.kind,
            "index_exact_below": self.config.index.exact_below,
        }

    def load_or_build_indexes(self, catalog: Catalog, force: bool = False) -> dict[str, VectorIndex]:
        """Per-scene indexes from the on-disk cache when its key matches, else embedded and saved now."""
        directory = index_dir(catalog.name, self.encoder.model_id)
        key = self._index_key(catalog)
        scenes = catalog.scenes["scene"].tolist()
        if not force and all((directory / s / "meta.json").is_file() for s in scenes):
            metas = [read_index_meta(directory / s) for s in scenes]
            if all({k: m.get(k) for k in key} == key for m in metas):
                return {s: VectorIndex.load(directory / s, self.config.index) for s in scenes}
        indexes = {}
        for scene in scenes:
            records = [r for r in self.items.values() if r.scene == scene]
            vectors = [
                self.encoder.encode([r.render() for r in records[start : start + 1024]])
                for start in tqdm(range(0, len(records), 1024), desc=f"embedding {scene}", unit="batch", disable=not records)
            ]
            index = VectorIndex(self.encoder.dim, self.config.index, expected_size=len(records))
            if records:  # one upsert: an IVF index trains on the whole scene
                index.upsert([r.item_id for r in records], np.concatenate(vectors))
            index.save(directory / scene, {"catalog": catalog.name, "scene": scene, **key})
            indexes[scene] = index
        return indexes

    def _fit_collab(self, catalog: Catalog) -> dict[str, ItemItemModel]:
        scene_of = catalog.items.set_index("item_id")["scene"]
        inter = catalog.interactions.assign(scene=catalog.interactions["item_id"].map(scene_of))
        models = {}
        for scene, group in inter.groupby("scene"):
            model = ItemItemModel.fit(group, self.config.rerank.ease_lambda, self.config.rerank.ease_max_items)
            if model is not None:
                models[scene] = model
        return models

    # ---- writes ---------------------------------------------------------------------------
    def sync(self) -> int:
        """Apply every change in the store not yet seen here (by this or any other process)."""
        with self._sync_lock:
            return self._apply_changes()

    def _apply_changes(self) -> int:
        changes = self.store.item_changes(self._item_seq)
        stale = [c for c in changes if c.op == "upsert" and (c.encoder != self.encoder.model_id or c.embedding is None or len(c.embedding) != self.encoder.dim)]
        fresh = dict(zip((c.seq for c in stale), self.encoder.encode([self._record(c).render() for c in stale])))
        for change in changes:
            if change.op == "delete":
                self._drop_item(change.item_id)
            else:
                self._put_item(self._record(change), fresh.get(change.seq, change.embedding))
            self._item_seq = change.seq
        events = self.store.events(self._event_seq)
        for event in events:
            rating = event.value if event.kind == "rating" else EVENT_RATINGS.get(event.kind)
            self.histories.add(event.user_id, HistoryEntry(event.item_id, rating, event.timestamp, event.kind))
            if event.kind != "dislike":
                self.popularity.add(event.item_id)
            self._event_seq = event.seq
        return len(changes) + len(events)

    @staticmethod
    def _record(change: ItemChange) -> ItemRecord:
        return ItemRecord(change.item_id, change.scene, change.title, change.text, change.attributes or {}, change.created_at)

    def _put_item(self, record: ItemRecord, vector: np.ndarray) -> None:
        if record.scene not in self.indexes:  # a stored item of a scene this catalog no longer has
            log.warning("skipping stored item %s: scene %r is not in the catalog", record.item_id, record.scene)
            return
        old = self.items.get(record.item_id)
        if old is not None and old.scene != record.scene:
            self.indexes[old.scene].remove([record.item_id])
        self.indexes[record.scene].upsert([record.item_id], vector)
        self.items[record.item_id] = record

    def _drop_item(self, item_id: str) -> None:
        record = self.items.pop(item_id, None)
        if record is not None:
            self.indexes[record.scene].remove([item_id])

    def add_items(self, items: Sequence[ItemIn]) -> list[str]:
        """Embed, store durably, then index: each item is recommendable when this returns."""
        if not items:
            raise RequestError("no items given: send at least one")
        for item in items:
            self.router.check(item.scene)
        if len({i.item_id for i in items}) != len(items):
            raise RequestError("the same item_id appears twice in one batch")
        records = [ItemRecord(i.item_id, i.scene, i.title, i.text, dict(i.attributes), int(time.time())) for i in items]
        vectors = self.encoder.encode([r.render() for r in records])
        self.store.upsert_items(
            ItemChange(0, r.item_id, "upsert", r.scene, r.title, r.text, r.attributes, r.created_at, self.encoder.model_id, v)
            for r, v in zip(records, vectors)
        )
        self.sync()
        return [r.item_id for r in records]

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        unknown = [i for i in item_ids if i not in self.items]
        if unknown:
            raise NotFoundError(f"unknown item ids: {unknown[:10]}")
        self.store.delete_items(item_ids)
        self.sync()
        return list(item_ids)

    def record_events(self, events: Sequence[EventIn]) -> int:
        """Store feedback durably; the user's next answer reflects it. Returns how many were stored."""
        if not events:
            raise RequestError("no events given: send at least one")
        unknown = sorted({e.item_id for e in events if e.item_id not in self.items})
        if unknown:
            raise NotFoundError(f"events refer to unknown item ids: {unknown[:10]}")
        now = int(time.time())
        self.store.add_events(EventRecord(e.user_id, e.item_id, e.kind, e.value, e.timestamp or now) for e in events)
        self.sync()
        return len(events)

    # ---- reads ----------------------------------------------------------------------------
    def scenes(self) -> list[dict[str, Any]]:
        return [
            {"scene": s, "name": self.scene_names.get(s, s), "description": self.router.texts[s], "items": len(self.indexes.get(s, ())), "interactive": s in self.collab}
            for s in self.router.scenes
        ]

    def _check_k(self, k: int | None) -> int:
        k = k or self.config.default_k
        if k > self.config.max_k:
            raise RequestError(f"k={k} is above the maximum {self.config.max_k}; ask for 1 to {self.config.max_k} items")
        return k

    def _history(self, request: RecommendRequest) -> tuple[list[HistoryEntry], bool]:
        unknown = [i for i in request.history if i not in self.items]
        if unknown:
            raise NotFoundError(f"history refers to unknown item ids: {unknown[:10]}")
        user_known = bool(request.user_id) and (request.user_id in self.histories or request.user_id in self.profiles)
        if request.user_id and not user_known and not (request.query or request.history or request.profile):
            raise NotFoundError(
                f"unknown user {request.user_id!r} with nothing else to go on: send a query, a history or a profile too"
            )
        stored = [h for h in self.histories.get(request.user_id or "") if h.item_id in self.items]
        given = [HistoryEntry(i, None, 0, "history") for i in request.history]
        return stored + given, user_known

    def recommend(self, request: RecommendRequest, intent_scene: str | None = None) -> RecommendResponse:
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round((now - clock) * 1000, 2)
            clock = now

        k = self._check_k(request.k)
        self.sync()
        history, user_known = self._history(request)
        positive = [h for h in history if h.kind != "dislike" and (h.rating is None or h.rating >= self.config.rerank.positive_rating)]
        profile = {**self.profiles.get(request.user_id or "", {}), **request.profile}
        profile = {key: v for key, v in profile.items() if key not in PROFILE_TEXT_EXCLUDE}
        liked_titles = [self.items[h.item_id].title for h in positive[-LIKED_TITLES_IN_TEXT:]]
        text = request.query or render_user(liked_titles=liked_titles, profile=profile)
        vector = self.encoder.encode([text])[0] if text else None
        lap("encode")

        decision = self.router.route(
            request.scene, intent_scene, vector if request.query else None, [self.items[h.item_id].scene for h in history]
        )
        lap("route")

        scene, index = decision.scene, self.indexes[decision.scene]
        excluded = set(request.filters.exclude_item_ids)
        if request.filters.exclude_seen:
            excluded |= {h.item_id for h in history}
        allow = self._allow(excluded, request.filters)
        cf_history = [h.item_id for h in positive if self.items[h.item_id].scene == scene]
        candidates = self._candidates(scene, index, vector, cf_history, allow)
        lap("retrieve")

        ids = list(candidates)
        vectors = index.vectors(ids)
        semantic = vectors @ vector if vector is not None else np.zeros(len(ids))
        pool = [
            Candidate(i, float(semantic[n]), candidates[i], self.popularity.prior(i)) for n, i in enumerate(ids)
        ]
        has_history = any(c.collaborative for c in pool)
        ranked = self.reranker.rank(pool, vectors, k, has_text=vector is not None, has_history=has_history)
        lap("rerank")

        items = [self._answer(c, request, scene, cf_history, bool(liked_titles)) for c in ranked]
        return RecommendResponse(
            items=items,
            scene=scene,
            scene_source=decision.source,
            scene_scores=decision.scores,
            user_known=user_known,
            timings_ms=timings,
            model_versions={"encoder": self.encoder.model_id, "collaborative": self.collab[scene].method if scene in self.collab else "none"},
        )

    def _allow(self, excluded: set[str], filters: Filters) -> Callable[[str], bool]:
        constrained = bool(filters.attributes or filters.ranges)
        return lambda i: i not in excluded and (not constrained or item_matches(self.items[i].attributes, filters))

    def _candidates(
        self, scene: str, index: VectorIndex, vector: np.ndarray | None, history: list[str], allow: Callable[[str], bool]
    ) -> dict[str, float]:
        """Candidate id → collaborative score: ANN neighbours of the text, plus the top collaborative items."""
        n = self.config.rerank.candidates
        found: dict[str, float] = {}
        if vector is not None:
            found.update((i, 0.0) for i, _ in index.search(vector, n, allow))
        model = self.collab.get(scene)
        if model is not None and history:
            scores = model.scores(history)
            for position in np.argsort(-scores, kind="stable"):
                item_id = model.item_ids[position]
                if len(found) >= 2 * n or scores[position] <= 0:
                    break
                if item_id in index and allow(item_id):
                    found[item_id] = 0.0
            for item_id in found:
                position = model.position.get(item_id)
                found[item_id] = float(scores[position]) if position is not None else 0.0
        if not found and vector is None:  # no text, no usable history: fall back to the most popular
            ranked = sorted((i for i in index.item_ids if allow(i)), key=lambda i: -self.popularity.counts.get(i, 0))
            found = dict.fromkeys(ranked[:n], 0.0)
        return found

    def _is_new(self, record: ItemRecord) -> bool:
        """Added recently and nobody has interacted with it yet: the item cold-start case."""
        recent = time.time() - record.created_at < NEW_ITEM_SECONDS
        return recent and self.popularity.counts.get(record.item_id, 0) == 0

    def _answer(self, c: Candidate, request: RecommendRequest, scene: str, history: list[str], has_taste_text: bool) -> RecommendedItem:
        record = self.items[c.item_id]
        reasons = []
        if request.query:
            reasons.append(f"matches your request (similarity {c.semantic:.2f})")
        elif has_taste_text:
            reasons.append(f"close to what you liked (similarity {c.semantic:.2f})")
        if c.collaborative > 0 and scene in self.collab:
            source = self.collab[scene].strongest_source(history, c.item_id)
            if source is not None:
                reasons.append(f"people who liked {self.items[source].title} also liked this")
        if self._is_new(record):
            reasons.append(f"new in {self.scene_names.get(scene, scene)}")
        elif c.popularity >= 0.8:
            reasons.append(f"popular in {self.scene_names.get(scene, scene)}")
        return RecommendedItem(item_id=c.item_id, title=record.title, scene=scene, score=round(c.score, 4), reasons=reasons, attributes=record.attributes)
