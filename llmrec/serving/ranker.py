"""The Ranker: everything that needs the catalog's state, in one stage.

It holds the per-scene indexes (`Retriever`), the scene vectors the router compares a query with,
what is known about users (`Users`) and the served blend; one call routes the request, proposes
collaborative candidates, retrieves and ranks, so candidate vectors never leave the process that
holds them. Under Ray Serve it is one deployment (scaled as a whole); in one process the
`Recommender` calls the same object. Its sub-stages keep their own budgets and fallbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import PipelineConfig, shipped_or_path
from llmrec.data.catalog import Catalog
from llmrec.data.items import ItemRecord
from llmrec.data.store import Store
from llmrec.errors import AssetError, RequestError, UnavailableError
from llmrec.intent.rules import without_exclusions
from llmrec.intent.schema import Intent
from llmrec.serving.blend import MODEL_FILE, Blend, Candidate, CrossScores, TrainedBlend, request_mode
from llmrec.serving.budget import Observer, RequestClock
from llmrec.serving.context import category_values
from llmrec.serving.cross_encoder import CrossReranker
from llmrec.serving.encoder import Encoder
from llmrec.serving.retriever import Retrieved, Retriever
from llmrec.serving.router import RouteDecision, SceneRouter, scene_texts
from llmrec.serving.schemas import EventIn, Filters, ItemIn, RecommendedItem, RecommendRequest
from llmrec.serving.signals import SceneSignals
from llmrec.serving.understanding import CategoryPull, SceneFacts, Understood, category_texts
from llmrec.serving.users import UserContext, Users

log = logging.getLogger(__name__)
RETRIEVAL_ONLY = "ranked by similarity alone: the ranking stage did not answer"
STALE = "answered from the writes this replica had applied"


@dataclass
class Ranked:
    """The Ranker's answer: the items, how the scene was chosen, and its own timings and degradations."""

    items: list[RecommendedItem]
    decision: RouteDecision
    user_known: bool
    collaborative: str  # the scene's collaborative model: "ease", "cooccurrence" or "none"
    timings_ms: dict[str, float]
    degraded: list[str]


def rank_by_retrieval(retrieved: Retrieved, scene: str, k: int) -> list[RecommendedItem]:
    """The answer when ranking fails: retrieval order, semantic score first."""
    order = np.argsort(-np.asarray(retrieved.semantic), kind="stable")[:k]
    return [
        RecommendedItem(
            item_id=retrieved.item_ids[i],
            title=retrieved.titles[i],
            scene=scene,
            score=round(float(retrieved.semantic[i]), 4),
            reasons=[RETRIEVAL_ONLY],
            attributes=retrieved.attributes[i],
        )
        for i in order
    ]


class Ranker:
    def __init__(
        self,
        config: PipelineConfig,
        catalog: Catalog,
        store: Store,
        encoder: Encoder | Callable[[], Encoder],
        rebuild_index: bool = False,
        observe: Observer | None = None,
    ) -> None:
        self.config = config
        self.retriever = Retriever(config, catalog, store, encoder, rebuild_index)
        texts = scene_texts(catalog)
        self.router = SceneRouter(texts, self.retriever.text_vectors("scenes", texts), config.router.default_scene)
        self.users = Users(config, catalog, store)
        self._pulls: dict[str, tuple[SceneFacts, CategoryPull]] = {}  # per scene, with the facts it was built from
        self._load_category_pulls()
        self.signals = fit_signals(catalog, self.retriever, self.users)
        self.blend = Blend(config.rerank)
        self._blend_version: int | None = None
        self.reload_blend()
        self.cross = load_cross_encoder(config)
        self.observe = observe

    # ---- the request ----------------------------------------------------------------------
    def catch_up(self) -> str | None:
        """Apply the writes stored since the last sync, so an answer never misses a write acknowledged
        before it began; with the store away, the answer comes from the writes this replica applied,
        and the note returned says so."""
        try:
            self.retriever.sync(rebuild_lexical=False)
            self.users.sync()
        except UnavailableError as error:
            log.warning("answering from the writes applied so far: %s", error)
            return f"sync: the store did not answer; {STALE}"
        return None

    def prepare(self, request: RecommendRequest) -> UserContext:
        """The user's side of a request without text: what to embed comes from the user's history."""
        self.catch_up()  # a note that the store is away comes with the answer: the recommend call that follows catches up again
        return self.users.prepare(request)

    async def recommend(
        self, request: RecommendRequest, intent: Intent | None, vector: np.ndarray | None, context: UserContext | None, budget_s: float, reveal_history: bool = True
    ) -> Ranked:
        """Route, propose, retrieve and rank within `budget_s`; `context` is given when the caller prepared it.
        Without `reveal_history` reasons name only items the caller sent, never ones from the user's stored history."""
        run = RequestClock(self.config.deadline, self.observe, total_s=budget_s)
        query, k = request.query, request.k or self.config.default_k
        stale = await run.stage("sync", lambda: asyncio.to_thread(self.catch_up), lambda: None, STALE)
        if stale:
            run.degraded.append(stale)
        if context is None:
            context = await run.stage(
                "prepare",
                lambda: asyncio.to_thread(self.users.prepare, request),
                (lambda: UserContext(user_known=False, text=query, excluded=list(request.filters.exclude_item_ids))) if query else None,
                "answered from the query alone, without the user's history",
            )
        has_text = vector is not None
        try:
            decision = await run.stage(
                "route", lambda: self._route(request.scene, intent, vector if query else None, context.history_scenes)
            )
        except RequestError as error:
            if query and not has_text:  # the query could have been routed had the encoder answered
                raise UnavailableError(f"cannot route the query without the encoder ({error}); try again or send a scene") from error
            raise
        scene = decision.scene
        if scene is None:  # nothing in the catalog fits: say so, with no items
            return Ranked([], decision, context.user_known, "none", run.timings, run.degraded)
        understood = Understood(request.filters, [], "")
        if query:  # only free text names years, exclusions or items
            understood, context, vector = await run.stage(
                "understand",
                lambda: asyncio.to_thread(self._understand, scene, request, intent, context, vector),
                lambda: (Understood(request.filters, [], without_exclusions(query)), context, vector),
                "ignored the years, exclusions and titles the request names",
            )
        filters = understood.filters
        extra = await run.stage(
            "collaborative",
            lambda: asyncio.to_thread(self.users.candidate_ids, scene, context, filters, bool(query) and has_text),
            list,
            "retrieved by text similarity alone",
        )
        retrieved = await run.stage(
            "retrieve",
            lambda: asyncio.to_thread(self._retrieve, scene, vector, context, filters, extra, understood.lexical_query if query else None),
        )
        items, collaborative = await run.stage(
            "rank",
            lambda: asyncio.to_thread(self.rank, scene, request, context, retrieved, k, has_text, reveal_history),
            lambda: (rank_by_retrieval(retrieved, scene, k), "none"),
            "ranked by retrieval similarity alone",
        )
        return Ranked(items, decision, context.user_known, collaborative, run.timings, run.degraded)

    def _understand(
        self, scene: str, request: RecommendRequest, intent: Intent | None, context: UserContext, vector: np.ndarray | None
    ) -> tuple[Understood, UserContext, np.ndarray | None]:
        """The intent applied to the scene; items the request names join the user's side and the query vector."""
        understood = self.users.understand(scene, request, intent)
        if understood.references:
            context = self.users.with_references(context, understood.references)
            vector = self.retriever.toward(scene, vector, understood.references)
        if vector is not None:
            understand = self.config.understand
            vector = self.category_pull(scene).pull(vector, understand.category_pull, understand.category_temperature)
        return understood, context, vector

    def _load_category_pulls(self) -> None:
        """Every scene's category values embedded at start, from the cache beside the indexes when it has them."""
        facts = {scene: self.users.facts(scene) for scene in self.router.scenes}
        keys = {scene: category_texts(scene, f.categories) for scene, f in facts.items()}
        flat = {f"{scene}/{key}": text for scene, by_key in keys.items() for key, text in by_key.items()}
        vectors = iter(self.retriever.text_vectors("categories", flat))
        for scene, by_key in keys.items():
            self._pulls[scene] = (facts[scene], CategoryPull(tuple(by_key), _stack([next(vectors) for _ in by_key])))

    def category_pull(self, scene: str) -> CategoryPull:
        """The scene's category values as vectors, as of its items now (read again when they change);
        a value first seen since start is embedded then."""
        facts = self.users.facts(scene)
        held_facts, held = self._pulls.get(scene, (None, CategoryPull((), _stack([]))))
        if held_facts is facts:
            return held
        known = dict(zip(held.keys, held.vectors))
        keys = category_texts(scene, facts.categories)
        missing = [key for key in keys if key not in known]
        known.update(zip(missing, self.retriever.encoder.encode([keys[key] for key in missing]) if missing else []))
        pull = CategoryPull(tuple(keys), _stack([known[key] for key in keys]))
        self._pulls[scene] = (facts, pull)
        return pull

    def _retrieve(self, scene: str, vector: np.ndarray | None, context: UserContext, filters: Filters, extra: list[str], query: str | None) -> Retrieved:
        text = self.users.lexical_text(scene, context, query)
        return self.retriever.search(scene, vector, self.config.rerank.candidates, context.excluded, filters, extra, text)

    async def _route(self, explicit: str | None, intent: Intent | None, vector: np.ndarray | None, history_scenes: list[str]) -> RouteDecision:
        judged = intent is not None and intent.source in ("model", "cache")  # the cache holds only model answers
        return self.router.route(explicit, intent.scene if intent else None, vector, history_scenes, none_fits=judged and intent.scene is None)

    def rank(
        self, scene: str, request: RecommendRequest, context: UserContext, retrieved: Retrieved, k: int, has_text: bool, reveal_history: bool = True
    ) -> tuple[list[RecommendedItem], str]:
        """The top k of the retrieved candidates, blended, diversified and explained; and the collaborative model used."""
        users = self.users
        with users.lock:
            pool, history, mode = self.candidates(scene, request, context, retrieved)
            has_history = any(c.collaborative or c.engaged or c.bridge for c in pool)
            weights = self.blend.weights(scene, mode, has_text, has_history)
            fallback = self.blend.defaults(has_text, has_history)
            ranked = self.blend.rank(pool, retrieved.vectors, k, weights, cross=self._cross_scores(context.text), fallback=fallback)
            nameable = history if reveal_history else [i for i in history if i in set(context.named_ids)]
            items = [self._explain(c, request, scene, nameable, context.has_taste_text) for c in ranked if c.item_id in users.items]
            model = users.collab.get(scene)
            return items, model.method if model is not None else "none"

    def candidates(self, scene: str, request: RecommendRequest, context: UserContext, retrieved: Retrieved) -> tuple[list[Candidate], list[str], str]:
        """The retrieved items with every signal of the blend, the user's liked items in the scene,
        and the request's mode (which weights rank it). `llmrec train ranker` fits on these."""
        users = self.users
        with users.lock:
            model = users.collab.get(scene)
            history = users.scene_history(scene, context)
            ids = retrieved.item_ids
            # EASE of the candidates alone (|history| x |candidates| weights); only the bridge reads the
            # history's whole rows, the user's scores over the warm items it regresses on.
            zeros = np.zeros(len(ids), np.float32)
            scores = model.scores_of(history, ids) if model is not None and history else zeros
            engaged_history = users.scene_history(scene, context, engaged=True)
            engaged = model.scores_of(engaged_history, ids) if model is not None and engaged_history else zeros
            signals = self.signals.get(scene)
            records = [users.items[i] for i in ids]
            bridge = signals.bridge(records, retrieved.vectors, model.scores(engaged_history)) if signals and model is not None and engaged_history else zeros
            popularity = signals.popularity(records, retrieved.vectors, users.popularity.counts) if signals else zeros
            demographic = signals.demographic(ids, context.profile) if signals and context.profile else zeros
            liking = self.blend.context_model(scene)
            like = (
                liking.probabilities(request.user_id, context.profile, ids, [category_values(r.attributes) for r in records], request.context)
                if liking is not None
                else zeros
            )
            newcomers = self.blend.newcomer_model(scene)
            newcomer = newcomers.logits(context.profile, engaged_history, ids) if newcomers is not None else zeros
            pool = [
                Candidate(
                    item_id,
                    float(retrieved.semantic[n]),
                    float(retrieved.lexical[n]),
                    float(scores[n]),
                    float(engaged[n]),
                    float(bridge[n]),
                    float(popularity[n]),
                    float(demographic[n]),
                    float(like[n]),
                    float(newcomer[n]),
                )
                for n, item_id in enumerate(ids)
            ]
            return pool, history, request_mode(bool(request.query), len(history))

    def _cross_scores(self, text: str) -> CrossScores | None:
        """The trained cross-encoder's scores of (this request's text, item text), if one is configured."""
        if self.cross is None or not text:
            return None
        return lambda ids: self.cross.scores(text, [self.users.items[i].render() for i in ids])

    def _is_new(self, item_id: str) -> bool:
        """Added recently and nobody has interacted with it yet: the item cold-start case."""
        return self.users.items[item_id].is_recent() and self.users.popularity.counts.get(item_id, 0) == 0

    def _explain(self, c: Candidate, request: RecommendRequest, scene: str, nameable: list[str], has_taste_text: bool) -> RecommendedItem:
        """The item with its reasons; a "people who liked X" reason names X only from `nameable` liked items."""
        users = self.users
        record = users.items[c.item_id]
        scene_name = users.scene_names.get(scene, scene)
        reasons = []
        if request.query:
            reasons.append(f"matches your request (similarity {c.semantic:.2f})")
        elif has_taste_text:
            reasons.append(f"close to what you liked (similarity {c.semantic:.2f})")
        if c.collaborative > 0 and scene in users.collab:
            source = users.collab[scene].strongest_source(nameable, c.item_id)
            if source is not None:
                reasons.append(f"people who liked {users.items[source].title} also liked this")
            else:  # the user's stored history, which this caller may not see named
                reasons.append("people with tastes like yours also liked this")
        if self._is_new(c.item_id):
            reasons.append(f"new in {scene_name}")
        elif users.popularity.prior(c.item_id) >= 0.8:
            reasons.append(f"popular in {scene_name}")
        liking = self.blend.context_model(scene)
        if liking is not None and liking.knows(request.context) and c.like_probability >= 0.5:
            reasons.append(f"liked in {request.context} (probability {c.like_probability:.2f})")
        return RecommendedItem(
            item_id=c.item_id,
            title=record.title,
            scene=scene,
            score=round(c.score, 4),
            reasons=reasons,
            attributes=record.attributes,
            like_probability=round(c.like_probability, 6) if liking is not None else None,
        )

    # ---- writes and listings --------------------------------------------------------------
    def sync(self) -> int:
        """Catch up with writes made by any process, and with a retrained blend."""
        self.reload_blend()
        return self.retriever.sync() + self.users.sync()

    def reload_blend(self) -> bool:
        """Load the trained blend (rerank.model) when its file is new or changed: retraining swaps the
        weights of every replica within a sync interval, with no restart (the file is replaced atomically)."""
        if not self.config.rerank.model:
            return False
        directory = shipped_or_path(self.config.rerank.model)
        try:
            version = (directory / MODEL_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            version = None
        if self.blend.trained is not None and version == self._blend_version:
            return False
        self._blend_version = version
        if self.blend.trained is None:  # at start: a missing or bad model is a configuration error
            loaded = TrainedBlend.load(directory)
        else:
            try:
                loaded = TrainedBlend.load(directory)
            except (AssetError, ValueError, KeyError) as error:  # serving keeps the weights it has (warned once per change)
                log.warning("kept the current blend weights: %s", error)
                return False
        with self.users.lock:  # a request ranks with one blend: its weights and context model read under this lock
            self.blend.trained = loaded
        return True

    def check_scenes(self, scenes: Sequence[str]) -> None:
        for scene in scenes:
            self.retriever.check_scene(scene)

    def add_items(self, items: Sequence[ItemIn], vectors: np.ndarray | None = None) -> list[str]:
        """Store durably, then index: each item is recommendable when this returns (`vectors` if the caller embedded them)."""
        added = self.retriever.add_items(items, vectors)
        self.users.sync()
        return added

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        removed = self.retriever.remove_items(item_ids)
        self.users.sync()
        return removed

    def record_events(self, events: Sequence[EventIn]) -> int:
        """Store feedback durably; the user's next answer reflects it."""
        return self.users.record_events(events)

    def scenes(self) -> list[dict[str, Any]]:
        """GET /v1/scenes: each scene with its description, size and whether it has interaction data."""
        sizes, names = self.retriever.scene_sizes(), self.users.scene_names
        return [
            {"scene": s, "name": names.get(s, s), "description": text, "items": sizes.get(s, 0), "interactive": s in self.users.collab}
            for s, text in self.router.texts.items()
        ]

    @property
    def items(self) -> dict[str, ItemRecord]:
        return self.retriever.items


def load_cross_encoder(config: PipelineConfig) -> CrossReranker | None:
    if not config.rerank.cross_encoder:
        return None
    directory = Path(config.rerank.cross_encoder).expanduser()
    if not directory.is_dir():
        raise AssetError(f"rerank.cross_encoder {config.rerank.cross_encoder} is not a directory: give the output of `llmrec train reranker`")
    return CrossReranker(str(directory), device=config.rerank.cross_device)


def _stack(vectors: list[np.ndarray]) -> np.ndarray:
    return np.array(vectors, dtype=np.float32) if vectors else np.zeros((0, 0), dtype=np.float32)


def fit_signals(catalog: Catalog, retriever: Retriever, users: Users) -> dict[str, SceneSignals]:
    """Each scene's content-side signals, from its indexed vectors and the catalog's interactions."""
    scene_of = catalog.items.set_index("item_id")["scene"]
    interactions = catalog.interactions.assign(scene=catalog.interactions["item_id"].map(scene_of))
    by_scene = dict(iter(interactions.groupby("scene")))
    out = {}
    for scene, index in retriever.indexes.items():
        ids = [i for i in index.item_ids if i in users.items]
        records = [users.items[i] for i in ids]
        frame = by_scene.get(scene, interactions.iloc[:0])
        out[scene] = SceneSignals.fit(records, index.vectors(ids), frame, users.profiles, users.collab.get(scene))
    return out
