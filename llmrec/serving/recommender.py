"""The whole pipeline in one process: the stage objects composed by `Pipeline` over `LocalStages`.

The CLI, the tests and offline evaluation use this; Ray Serve runs the same stage objects as
deployments (deployments/) and the same `Pipeline` in its ingress. Writes go to the Store first
and reach every stage through its `sync()`, the same path another process's writes take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llmrec.config import PipelineConfig
from llmrec.data.catalog import Catalog, load_catalog
from llmrec.data.items import ItemRecord
from llmrec.data.store import Store
from llmrec.index.vector_index import VectorIndex
from llmrec.intent.parser import IntentParser
from llmrec.intent.schema import Intent
from llmrec.serving.encoder import Encoder
from llmrec.serving.pipeline import LocalStages, Pipeline, scene_listing
from llmrec.serving.ranker import Histories, RankingStage
from llmrec.serving.retriever import Retriever
from llmrec.serving.router import SceneRouter
from llmrec.serving.schemas import EventIn, ItemIn, RecommendRequest, RecommendResponse


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
        self.store = store or Store.open(self.config.store.url, self.catalog_name)
        self.router = SceneRouter.from_catalog(catalog, self.encoder.encode, self.config.router.default_scene)
        self.intent = IntentParser(self.config.intent, self.router.texts)
        self.retriever = Retriever(self.config, catalog, self.store, self.encoder, rebuild_index)
        self.ranking = RankingStage(self.config, catalog, self.store)
        self.pipeline = Pipeline(LocalStages(self.intent, self.encoder, self.router, self.retriever, self.ranking), self.config)

    @property
    def items(self) -> dict[str, ItemRecord]:
        return self.retriever.items

    @property
    def indexes(self) -> dict[str, VectorIndex]:
        return self.retriever.indexes

    @property
    def histories(self) -> Histories:
        return self.ranking.histories

    def sync(self) -> int:
        """Catch up with writes made by any process."""
        return self.retriever.sync() + self.ranking.sync()

    def add_items(self, items: Sequence[ItemIn]) -> list[str]:
        """Embed, store durably, then index: each item is recommendable when this returns."""
        added = self.retriever.add_items(items)
        self.ranking.sync()
        return added

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        removed = self.retriever.remove_items(item_ids)
        self.ranking.sync()
        return removed

    def record_events(self, events: Sequence[EventIn]) -> int:
        """Store feedback durably; the user's next answer reflects it."""
        return self.ranking.record_events(events)

    def scenes(self) -> list[dict[str, Any]]:
        return scene_listing(self.router.texts, self.ranking.scene_names, self.retriever.scene_sizes(), set(self.ranking.collab))

    def parse_intent(self, text: str) -> Intent:
        return asyncio.run(self.pipeline.parse_intent(text))

    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        return asyncio.run(self.pipeline.recommend(request))
