"""The ranking stage: what is known about users, and the final order of the candidates.

It holds every user's history (the catalog's plus the stored events), profiles, one collaborative
model per scene and popularity; it turns a request into the user's side of the query (the text to
embed, the history, what to exclude), proposes collaborative candidates, and ranks the retrieved
candidates with the blend + MMR of `rerank.Reranker` (the blend's head rescored by a trained
cross-encoder when `rerank.cross_encoder` names one), giving each a reason.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.config import PipelineConfig
from llmrec.data.catalog import Catalog
from llmrec.data.items import allow_filter, items_from_catalog, record_from_change
from llmrec.data.store import EventRecord, Store
from llmrec.data.text import render_user
from llmrec.errors import AssetError, NotFoundError, RequestError
from llmrec.serving.blend import Candidate, CrossScores, Reranker
from llmrec.serving.collaborative import ItemItemModel, Popularity
from llmrec.serving.cross_encoder import CrossReranker
from llmrec.serving.retriever import Retrieved
from llmrec.serving.schemas import EventIn, Filters, RecommendedItem, RecommendRequest

PROFILE_TEXT_EXCLUDE = {"zip_code"}  # identifiers, not taste
EVENT_RATINGS = {"like": 5.0, "purchase": 5.0, "dislike": 1.0}
LIKED_TITLES_IN_TEXT = 10


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


@dataclass
class UserContext:
    """The user's side of one request, prepared before anything is embedded or retrieved."""

    user_known: bool
    text: str  # what to embed: the query, else the user's taste and profile as text
    history_ids: list[str] = field(default_factory=list)
    history_scenes: list[str] = field(default_factory=list)
    positive_ids: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    has_taste_text: bool = False


@dataclass
class Ranked:
    items: list[RecommendedItem]
    collaborative: str  # the scene's collaborative model: "ease", "cooccurrence" or "none"


class RankingStage:
    def __init__(self, config: PipelineConfig, catalog: Catalog, store: Store) -> None:
        self.config = config
        self.reranker = Reranker(config.rerank)
        self.cross = self._load_cross(config)
        self.items = items_from_catalog(catalog)
        self.scene_names = dict(zip(catalog.scenes["scene"], catalog.scenes["name"]))
        self.profiles = {u: json.loads(a) for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}
        self.histories = Histories(catalog.interactions)
        self.collab = self._fit_collab(catalog)
        self.popularity = Popularity(catalog.interactions)
        self.store = store
        self._lock = threading.RLock()  # held by reads too: a follower thread applies writes
        self._item_seq = 0
        self._event_seq = 0
        self.sync()

    @staticmethod
    def _load_cross(config: PipelineConfig) -> CrossReranker | None:
        if not config.rerank.cross_encoder:
            return None
        if not Path(config.rerank.cross_encoder).expanduser().is_dir():
            raise AssetError(f"rerank.cross_encoder {config.rerank.cross_encoder} is not a directory: give the output of `llmrec train reranker`")
        return CrossReranker(str(Path(config.rerank.cross_encoder).expanduser()), device=config.rerank.cross_device)

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
        """Apply the item changes and events stored since the last call (by any process)."""
        with self._lock:
            changes = self.store.item_changes(self._item_seq)
            for change in changes:
                if change.op == "delete":
                    self.items.pop(change.item_id, None)
                elif change.scene in self.scene_names:
                    self.items[change.item_id] = record_from_change(change)
                self._item_seq = change.seq
            events = self.store.events(self._event_seq)
            for event in events:
                rating = event.value if event.kind == "rating" else EVENT_RATINGS.get(event.kind)
                self.histories.add(event.user_id, HistoryEntry(event.item_id, rating, event.timestamp, event.kind))
                if event.kind != "dislike":
                    self.popularity.add(event.item_id)
                self._event_seq = event.seq
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
        self.store.add_events(EventRecord(e.user_id, e.item_id, e.kind, e.value, e.timestamp or now) for e in events)
        self.sync()
        return len(events)

    # ---- reads ----------------------------------------------------------------------------
    def prepare(self, request: RecommendRequest) -> UserContext:
        """Check the request against what exists, and gather the user's history, taste text and exclusions."""
        with self._lock:
            self.sync()
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
                excluded=excluded,
                has_taste_text=bool(liked_titles),
            )

    def _scene_history(self, scene: str, context: UserContext) -> list[str]:
        return [i for i in context.positive_ids if i in self.items and self.items[i].scene == scene]

    def candidate_ids(self, scene: str, context: UserContext, filters: Filters, has_text: bool) -> list[str]:
        """Collaborative candidates from the user's history in this scene; with neither text nor
        usable history, the scene's most popular items."""
        with self._lock:
            n = self.config.rerank.candidates
            allow = allow_filter(self.items, context.excluded, filters)
            model = self.collab.get(scene)
            history = self._scene_history(scene, context)
            found: list[str] = []
            if model is not None and history:
                scores = model.scores(history)
                for position in np.argsort(-scores, kind="stable"):
                    if len(found) >= 2 * n or scores[position] <= 0:
                        break
                    item_id = model.item_ids[position]
                    if allow(item_id) and self.items[item_id].scene == scene:
                        found.append(item_id)
            if not found and not has_text:
                in_scene = (i for i, r in self.items.items() if r.scene == scene and allow(i))
                found = sorted(in_scene, key=lambda i: -self.popularity.counts.get(i, 0))[:n]
            return found

    def rank(self, scene: str, request: RecommendRequest, context: UserContext, retrieved: Retrieved, k: int, has_text: bool) -> Ranked:
        """The top k of the retrieved candidates, blended, diversified and explained."""
        with self._lock:
            self.sync()
            model = self.collab.get(scene)
            history = self._scene_history(scene, context)
            scores = model.scores(history) if model is not None and history else None
            pool = []
            for n, item_id in enumerate(retrieved.item_ids):
                position = model.position.get(item_id) if scores is not None else None
                collaborative = float(scores[position]) if position is not None else 0.0
                pool.append(Candidate(item_id, float(retrieved.semantic[n]), collaborative, self.popularity.prior(item_id)))
            has_history = any(c.collaborative for c in pool)
            ranked = self.reranker.rank(pool, retrieved.vectors, k, has_text=has_text, has_history=has_history, cross=self._cross_scores(context.text))
            items = [self._explain(c, request, scene, history, context.has_taste_text) for c in ranked if c.item_id in self.items]
            return Ranked(items, model.method if model is not None else "none")

    def _cross_scores(self, text: str) -> CrossScores | None:
        """The trained cross-encoder's scores of (this request's text, item text), if one is configured."""
        if self.cross is None or not text:
            return None
        return lambda ids: self.cross.scores(text, [self.items[i].render() for i in ids])

    def _is_new(self, item_id: str) -> bool:
        """Added recently and nobody has interacted with it yet: the item cold-start case."""
        return self.items[item_id].is_recent() and self.popularity.counts.get(item_id, 0) == 0

    def _explain(self, c: Candidate, request: RecommendRequest, scene: str, history: list[str], has_taste_text: bool) -> RecommendedItem:
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
        if self._is_new(c.item_id):
            reasons.append(f"new in {self.scene_names.get(scene, scene)}")
        elif c.popularity >= 0.8:
            reasons.append(f"popular in {self.scene_names.get(scene, scene)}")
        return RecommendedItem(item_id=c.item_id, title=record.title, scene=scene, score=round(c.score, 4), reasons=reasons, attributes=record.attributes)
