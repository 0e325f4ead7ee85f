"""What is known about users: histories, profiles, collaborative models and popularity per scene.

`Users` turns a request into the user's side of the query (the text to embed, the history, what to
exclude) and proposes collaborative candidates; it follows the store, so events recorded by any
process reach it. The Ranker (`ranker.py`) reads it to rank.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import PipelineConfig
from llmrec.data.catalog import Catalog
from llmrec.data.items import allow_filter, items_from_catalog, record_from_change
from llmrec.data.store import EventRecord, Store
from llmrec.data.text import render_user
from llmrec.errors import NotFoundError, RequestError
from llmrec.intent.schema import Intent
from llmrec.serving.collaborative import ItemItemModel, Popularity
from llmrec.serving.schemas import EventIn, Filters, RecommendRequest
from llmrec.serving.understanding import SceneFacts, Understood, understand

PROFILE_TEXT_EXCLUDE = {"zip_code"}  # identifiers, not taste
EVENT_RATINGS = {"like": 5.0, "purchase": 5.0, "dislike": 1.0}
LIKED_TITLES_IN_TEXT = 10
LIKED_ITEMS_IN_LEXICAL_TEXT = 50


@dataclass
class HistoryEntry:
    item_id: str
    rating: float | None
    timestamp: int
    kind: str = "rating"


class Histories:
    """Every user's interactions in time order: the catalog's (kept as arrays, cheap to load) plus
    the events recorded since (kept as entries)."""

    def __init__(self, interactions: pd.DataFrame, recent_limit: int) -> None:
        self.recent_limit = recent_limit  # events recorded since, kept per user: the newest only
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
        recent = self._recent[user_id]
        recent.append(entry)
        if len(recent) > self.recent_limit:
            del recent[: len(recent) - self.recent_limit]

    def get(self, user_id: str) -> list[HistoryEntry]:
        start, end = self._slices.get(user_id, (0, 0))
        base = [
            HistoryEntry(i, float(r), int(t))
            for i, r, t in zip(self._items[start:end], self._ratings[start:end], self._times[start:end])
        ]
        return base + self._recent.get(user_id, [])


@dataclass
class UserContext:
    """The user's side of one request, prepared before anything is embedded or retrieved."""

    user_known: bool
    text: str  # what to embed: the query, else the user's taste and profile as text
    history_ids: list[str] = field(default_factory=list)
    history_scenes: list[str] = field(default_factory=list)
    positive_ids: list[str] = field(default_factory=list)
    engaged_ids: list[str] = field(default_factory=list)  # every interaction but dislikes
    excluded: list[str] = field(default_factory=list)
    has_taste_text: bool = False
    profile: dict[str, Any] = field(default_factory=dict)
    named_ids: list[str] = field(default_factory=list)  # what the caller sent (its history, the items its query names): reasons may name these


class Users:
    """Every user's state over one catalog, kept current from the store."""

    def __init__(self, config: PipelineConfig, catalog: Catalog, store: Store) -> None:
        self.config = config
        self.items = items_from_catalog(catalog)
        self.scene_names = dict(zip(catalog.scenes["scene"], catalog.scenes["name"]))
        self.profiles = {u: json.loads(a) for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}
        self.histories = Histories(catalog.interactions, config.store.history_per_user)
        self.collab = self._fit_collab(catalog)
        self.popularity = Popularity(catalog.interactions)
        self.store = store
        self.lock = threading.RLock()  # held by reads too: a follower thread applies writes
        self._syncing = threading.Lock()  # one catch-up with the store at a time
        self._item_seq = 0
        self._event_seq = 0
        self._popular_order: dict[str, tuple[tuple[int, int], list[str]]] = {}
        self._facts: dict[str, SceneFacts] = {}  # per scene, dropped when one of its items changes
        self._facts_generation = 0  # item changes applied: a SceneFacts read before the latest is not kept
        self.sync(from_start=True)

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
    def sync(self, from_start: bool = False) -> int:
        """Apply the item changes and events stored since the last call (by any process). The store is
        read outside `lock`, so a slow or absent store never holds up requests reading what is applied;
        never call it with `lock` held. `from_start` (a new replica) reads the logs compacted: each
        item's latest change, each user's latest `store.history_per_user` events, and every event's
        count in popularity, so memory and start-up do not grow with the length of the logs."""
        with self._syncing:
            if from_start:
                item_upto, event_upto = self.store.last_sequence("item_log"), self.store.last_sequence("event_log")
                changes = self.store.latest_item_changes(item_upto)
                events = self.store.latest_events(self.config.store.history_per_user, event_upto)
                counts = self.store.event_counts(event_upto)
            else:
                changes, events, counts = self.store.item_changes(self._item_seq), self.store.events(self._event_seq), None
                item_upto = changes[-1].seq if changes else self._item_seq
                event_upto = events[-1].seq if events else self._event_seq
            with self.lock:
                for change in changes:
                    previous = self.items.get(change.item_id)
                    if change.op == "delete":
                        self.items.pop(change.item_id, None)
                    elif change.scene in self.scene_names:
                        self.items[change.item_id] = record_from_change(change)
                    for scene in {change.scene, previous.scene if previous else None} - {None}:
                        self._facts.pop(scene, None)  # its titles and categories are read again when next asked
                    self._facts_generation += 1
                for event in events:
                    rating = event.value if event.kind == "rating" else EVENT_RATINGS.get(event.kind)
                    self.histories.add(event.user_id, HistoryEntry(event.item_id, rating, event.timestamp, event.kind))
                    if counts is None and event.kind != "dislike":
                        self.popularity.add(event.item_id)
                for item_id, n in (counts or {}).items():
                    self.popularity.add(item_id, n)
                self._item_seq, self._event_seq = item_upto, event_upto
            return len(changes) + len(events)

    def record_events(self, events: Sequence[EventIn]) -> int:
        """Store feedback durably; the user's next answer reflects it. Returns how many were stored."""
        if not events:
            raise RequestError("no events given: send at least one")
        self.sync()
        unknown = sorted({e.item_id for e in events if e.item_id not in self.items})
        if unknown:
            raise NotFoundError(f"events refer to unknown item ids: {unknown[:10]}")
        now = int(time.time())
        self.store.add_events(EventRecord(e.user_id, e.item_id, e.kind, e.value, e.timestamp or now, event_id=e.event_id) for e in events)
        self.sync()
        return len(events)

    # ---- reads ----------------------------------------------------------------------------
    def prepare(self, request: RecommendRequest) -> UserContext:
        """Check the request against what exists, and gather the user's history, taste text and exclusions
        (as of the last sync: the Ranker catches up with the store before each request)."""
        with self.lock:
            unknown = [i for i in request.history if i not in self.items]
            if unknown:
                raise NotFoundError(f"history refers to unknown item ids: {unknown[:10]}")
            user_known = bool(request.user_id) and (request.user_id in self.histories or request.user_id in self.profiles)
            if request.user_id and not user_known and not (request.query or request.history or request.profile):
                raise NotFoundError(
                    f"unknown user {request.user_id!r} with nothing else to go on: send a query, a history or a profile too"
                )
            stored = [h for h in self.histories.get(request.user_id or "") if h.item_id in self.items]
            history = stored + [HistoryEntry(i, None, 0, "history") for i in request.history]
            positive_rating = self.config.rerank.positive_rating
            positive = [h.item_id for h in history if h.kind != "dislike" and (h.rating is None or h.rating >= positive_rating)]
            profile = {**self.profiles.get(request.user_id or "", {}), **request.profile}
            profile = {key: v for key, v in profile.items() if key not in PROFILE_TEXT_EXCLUDE}
            liked_titles = [self.items[i].title for i in positive[-LIKED_TITLES_IN_TEXT:]]
            excluded = list(request.filters.exclude_item_ids)
            if request.filters.exclude_seen:
                excluded += [h.item_id for h in history]
            return UserContext(
                user_known=user_known,
                text=request.query or render_user(liked_titles=liked_titles, profile=profile),
                history_ids=[h.item_id for h in history],
                history_scenes=[self.items[h.item_id].scene for h in history],
                positive_ids=positive,
                engaged_ids=[h.item_id for h in history if h.kind != "dislike"],
                excluded=excluded,
                has_taste_text=bool(liked_titles),
                profile=profile,
                named_ids=list(request.history),
            )

    def scene_history(self, scene: str, context: UserContext, engaged: bool = False) -> list[str]:
        """The user's liked items in the scene (with `engaged`, every item they did not dislike)."""
        ids = context.engaged_ids if engaged else context.positive_ids
        return [i for i in ids if i in self.items and self.items[i].scene == scene]

    def facts(self, scene: str) -> SceneFacts:
        """What a request can name in the scene (its titles and categories), read once per change of its items."""
        with self.lock:
            facts = self._facts.get(scene)
            generation = self._facts_generation
            records = [r for r in self.items.values() if r.scene == scene] if facts is None else []
        if facts is None:  # read outside the lock (it walks every title); kept unless an item changed meanwhile
            facts = SceneFacts.of(records)
            with self.lock:
                if self._facts_generation == generation:
                    self._facts[scene] = facts
        return facts

    def understand(self, scene: str, request: RecommendRequest, intent: Intent | None) -> Understood:
        """The request's years, exclusions and named items applied to the scene (understanding.py)."""
        facts = self.facts(scene)
        with self.lock:
            return understand(facts, request.filters, intent, request.query or "", self.popularity.counts)

    @staticmethod
    def with_references(context: UserContext, references: list[str]) -> UserContext:
        """The items a request names count as liked (collaborative signals read them) and are not recommended."""
        return replace(
            context,
            positive_ids=list(dict.fromkeys([*context.positive_ids, *references])),
            engaged_ids=list(dict.fromkeys([*context.engaged_ids, *references])),
            excluded=list(dict.fromkeys([*context.excluded, *references])),
            named_ids=list(dict.fromkeys([*context.named_ids, *references])),
        )

    def lexical_text(self, scene: str, context: UserContext, query: str | None) -> str:
        """What BM25 matches: the query, else the text of the user's last liked items in the scene."""
        if query:
            return query
        with self.lock:
            liked = self.scene_history(scene, context)[-LIKED_ITEMS_IN_LEXICAL_TEXT:]
            return " ".join(self.items[i].render() for i in liked)

    def candidate_ids(self, scene: str, context: UserContext, filters: Filters, text_led: bool) -> list[str]:
        """Collaborative candidates from every item the user engaged with in this scene, and, unless
        the request is led by free text that retrieval answers (`text_led`), the scene's most popular
        items: a user known by a profile or a few clicks is often best served by what is popular."""
        with self.lock:
            n = self.config.rerank.candidates
            allow = allow_filter(self.items, context.excluded, filters)
            model = self.collab.get(scene)
            history = self.scene_history(scene, context, engaged=True)
            found: list[str] = []
            if model is not None and history:
                scores = model.scores(history)
                for position in np.argsort(-scores, kind="stable"):
                    if len(found) >= 2 * n or scores[position] <= 0:
                        break
                    item_id = model.item_ids[position]
                    if allow(item_id) and self.items[item_id].scene == scene:
                        found.append(item_id)
            if not text_led:  # the most popular n that pass, among the scene's first max_examined: bounded work at any scene size
                seen, examined = set(found), max(n, self.config.index.max_examined)
                found += list(itertools.islice((i for i in self._popular(scene)[:examined] if i not in seen and allow(i)), n))
            return found

    def _popular(self, scene: str) -> list[str]:
        """The scene's items, most interacted with first (re-sorted only after popularity changed)."""
        version = (self.popularity.version, len(self.items))
        cached = self._popular_order.get(scene)
        if cached is None or cached[0] != version:
            in_scene = [i for i, r in self.items.items() if r.scene == scene]
            cached = (version, sorted(in_scene, key=lambda i: -self.popularity.counts.get(i, 0)))
            self._popular_order[scene] = cached
        return cached[1]
