"""Reranker deployment: user state (histories, profiles, collaborative models) and the final ranking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import serve

from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.data.store import Store, follow
from llmrec.serving.ranker import Ranked, RankingStage, UserContext
from llmrec.serving.retriever import Retrieved
from llmrec.serving.schemas import EventIn, Filters, RecommendRequest


@serve.deployment(name="Reranker", max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class RerankerDeployment:
    def __init__(self, config: PipelineConfig) -> None:
        catalog = load_catalog(config.catalog)
        self.ranking = RankingStage(config, catalog, Store.open(config.store.url, catalog.name))
        self._stop = follow(self.ranking.sync, config.server.sync_interval_s)

    def prepare(self, request: RecommendRequest) -> UserContext:
        return self.ranking.prepare(request)

    def candidate_ids(self, scene: str, context: UserContext, filters: Filters, has_text: bool) -> list[str]:
        return self.ranking.candidate_ids(scene, context, filters, has_text)

    def rank(self, scene: str, request: RecommendRequest, context: UserContext, retrieved: Retrieved, k: int, has_text: bool) -> Ranked:
        return self.ranking.rank(scene, request, context, retrieved, k, has_text)

    def record_events(self, events: Sequence[EventIn]) -> int:
        return self.ranking.record_events(events)

    def scene_info(self) -> dict[str, Any]:
        return {"names": self.ranking.scene_names, "interactive": sorted(self.ranking.collab)}

    def ready(self) -> bool:
        return True

    def check_health(self) -> None:
        self.ranking.store.ping()

    def __del__(self) -> None:
        self._stop.set()
