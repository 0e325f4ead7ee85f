"""One recommendation request through the stages, within a deadline.

prepare (user side) → intent ∥ encode → route → collaborative candidates → retrieve → rank.

The flow is written once, against the `Stages` protocol: in one process the stages are plain
objects (`LocalStages`); under Ray Serve they are deployment handles. Each stage gets the smaller
of its own budget and what is left of the request's; a stage that fails or runs out of time
degrades the answer where there is a sensible substitute (and the response says so), and
otherwise ends the request with `UnavailableError` (HTTP 503), never a hang. Client errors
(`RequestError`) pass straight through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import numpy as np

from llmrec.config import PipelineConfig
from llmrec.errors import RequestError, UnavailableError
from llmrec.intent.parser import IntentParser
from llmrec.intent.schema import Intent, fallback_intent
from llmrec.serving.encoder import Encoder
from llmrec.serving.ranker import Ranked, RankingStage, UserContext
from llmrec.serving.retriever import Retrieved, Retriever
from llmrec.serving.router import RouteDecision, SceneRouter
from llmrec.serving.schemas import (
    Filters,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# stage name, seconds, outcome ("ok", "rejected", "timeout", "error"): metrics hook for the caller
Observer = Callable[[str, float, str], None]


class Stages(Protocol):
    async def prepare(self, request: RecommendRequest) -> UserContext: ...
    async def parse_intent(self, text: str) -> Intent: ...
    async def encode(self, text: str) -> np.ndarray: ...
    async def route(self, explicit: str | None, intent_scene: str | None, vector: np.ndarray | None, history_scenes: list[str]) -> RouteDecision: ...
    async def candidate_ids(self, scene: str, context: UserContext, filters: Filters, has_text: bool) -> list[str]: ...
    async def search(self, scene: str, vector: np.ndarray | None, n: int, excluded: list[str], filters: Filters, extra_ids: list[str]) -> Retrieved: ...
    async def rank(self, scene: str, request: RecommendRequest, context: UserContext, retrieved: Retrieved, k: int, has_text: bool) -> Ranked: ...


class LocalStages:
    """The stages as objects in this process; each call runs in a worker thread so budgets hold."""

    def __init__(self, intent: IntentParser, encoder: Encoder, router: SceneRouter, retriever: Retriever, ranking: RankingStage) -> None:
        self.intent, self.encoder, self.router, self.retriever, self.ranking = intent, encoder, router, retriever, ranking

    async def prepare(self, request: RecommendRequest) -> UserContext:
        return await asyncio.to_thread(self.ranking.prepare, request)

    async def parse_intent(self, text: str) -> Intent:
        return await asyncio.to_thread(self.intent.parse, text)

    async def encode(self, text: str) -> np.ndarray:
        vectors = await asyncio.to_thread(self.encoder.encode, [text])
        return vectors[0]

    async def route(self, explicit: str | None, intent_scene: str | None, vector: np.ndarray | None, history_scenes: list[str]) -> RouteDecision:
        return self.router.route(explicit, intent_scene, vector, history_scenes)

    async def candidate_ids(self, scene: str, context: UserContext, filters: Filters, has_text: bool) -> list[str]:
        return await asyncio.to_thread(self.ranking.candidate_ids, scene, context, filters, has_text)

    async def search(self, scene: str, vector: np.ndarray | None, n: int, excluded: list[str], filters: Filters, extra_ids: list[str]) -> Retrieved:
        return await asyncio.to_thread(self.retriever.search, scene, vector, n, excluded, filters, extra_ids)

    async def rank(self, scene: str, request: RecommendRequest, context: UserContext, retrieved: Retrieved, k: int, has_text: bool) -> Ranked:
        return await asyncio.to_thread(self.ranking.rank, scene, request, context, retrieved, k, has_text)


def rank_by_retrieval(retrieved: Retrieved, scene: str, k: int, reason: str) -> list[RecommendedItem]:
    """The answer when the ranking stage is unavailable: retrieval order, semantic score first."""
    order = np.argsort(-np.asarray(retrieved.semantic), kind="stable")[:k]
    return [
        RecommendedItem(item_id=retrieved.item_ids[i], title=retrieved.titles[i], scene=scene, score=round(float(retrieved.semantic[i]), 4), reasons=[reason], attributes=retrieved.attributes[i])
        for i in order
    ]


async def _nothing() -> None:
    return None


class _Request:
    """The clock, timings and degradations of one request."""

    def __init__(self, config: PipelineConfig, observe: Observer | None) -> None:
        self.deadline = config.deadline
        self.observe = observe
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.degraded: list[str] = []

    def remaining(self) -> float:
        return self.deadline.total_ms / 1000 - (time.perf_counter() - self.started)

    async def stage(self, name: str, call: Callable[[], Awaitable[T]], fallback: Callable[[], T] | None = None, instead: str = "") -> T:
        """Run one stage within its budget; on failure use `fallback` (noting `instead`) or raise UnavailableError."""
        budget = min(getattr(self.deadline, f"{name}_ms") / 1000, self.remaining())
        start = time.perf_counter()
        outcome = "ok"
        try:
            if budget <= 0:
                raise TimeoutError
            return await asyncio.wait_for(call(), budget)
        except RequestError:
            outcome = "rejected"
            raise
        except Exception as error:  # a stage is remote code: any failure is its failure, not the client's
            outcome = "timeout" if isinstance(error, TimeoutError) else "error"
            why = f"gave no answer within {budget * 1000:.0f} ms" if outcome == "timeout" else f"failed ({type(error).__name__}: {error})"
            log.warning("stage %s %s", name, why)
            if fallback is None:
                raise UnavailableError(f"the {name} stage {why}; the request cannot be answered without it, try again") from error
            self.degraded.append(f"{name}: {why}; {instead}")
            return fallback()
        finally:
            elapsed = time.perf_counter() - start
            self.timings[name] = round(elapsed * 1000, 2)
            if self.observe is not None:
                self.observe(name, elapsed, outcome)


class Pipeline:
    def __init__(self, stages: Stages, config: PipelineConfig, observe: Observer | None = None) -> None:
        self.stages = stages
        self.config = config
        self.observe = observe

    def check_k(self, k: int | None) -> int:
        k = k or self.config.default_k
        if k > self.config.max_k:
            raise RequestError(f"k={k} is above the maximum {self.config.max_k}; ask for 1 to {self.config.max_k} items")
        return k

    async def parse_intent(self, text: str) -> Intent:
        """The intent alone (POST /v1/intent), under the same budget and fallback as in a recommendation."""
        run = _Request(self.config, self.observe)
        return await run.stage("intent", lambda: self.stages.parse_intent(text), lambda: fallback_intent(text), "used the raw text")

    async def recommend(self, request: RecommendRequest, request_id: str | None = None) -> RecommendResponse:
        k = self.check_k(request.k)
        run = _Request(self.config, self.observe)
        stages = self.stages
        query = request.query

        context = await run.stage(
            "prepare",
            lambda: stages.prepare(request),
            (lambda: UserContext(user_known=False, text=query, excluded=list(request.filters.exclude_item_ids))) if query else None,
            "answered from the query alone, without the user's history",
        )
        intent, vector = await asyncio.gather(
            run.stage("intent", lambda: stages.parse_intent(query), lambda: fallback_intent(query), "routed by embedding with the raw text")
            if query
            else _nothing(),
            run.stage("encode", lambda: stages.encode(context.text), lambda: None, "ranked without text similarity")
            if context.text
            else _nothing(),
        )
        has_text = vector is not None
        try:
            decision = await run.stage(
                "route", lambda: stages.route(request.scene, intent.scene if intent else None, vector if query else None, context.history_scenes)
            )
        except RequestError as error:
            if query and not has_text:  # the query could have been routed had the encoder answered
                raise UnavailableError(f"cannot route the query without the encoder ({error}); try again or send a scene") from error
            raise
        scene = decision.scene
        extra = await run.stage(
            "collaborative", lambda: stages.candidate_ids(scene, context, request.filters, has_text), list, "retrieved by text similarity alone"
        )
        retrieved = await run.stage(
            "retrieve", lambda: stages.search(scene, vector, self.config.rerank.candidates, context.excluded, request.filters, extra)
        )
        reason = "ranked by similarity alone: the ranking stage did not answer"
        ranked = await run.stage(
            "rank",
            lambda: stages.rank(scene, request, context, retrieved, k, has_text),
            lambda: Ranked(rank_by_retrieval(retrieved, scene, k, reason), "none"),
            "ranked by retrieval similarity alone",
        )
        return RecommendResponse(
            items=ranked.items,
            scene=scene,
            scene_source=decision.source,
            scene_scores=decision.scores,
            user_known=context.user_known,
            intent=intent,
            degraded=run.degraded,
            timings_ms={**run.timings, "total": round((time.perf_counter() - run.started) * 1000, 2)},
            model_versions={"encoder": self.config.encoder.model, "collaborative": ranked.collaborative},
            request_id=request_id,
        )


def scene_listing(texts: dict[str, str], names: dict[str, str], sizes: dict[str, int], interactive: set[str]) -> list[dict[str, Any]]:
    """GET /v1/scenes: each scene with its description, size and whether it has interaction data."""
    return [
        {"scene": s, "name": names.get(s, s), "description": text, "items": sizes.get(s, 0), "interactive": s in interactive}
        for s, text in texts.items()
    ]
