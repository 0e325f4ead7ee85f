"""The whole pipeline in one process: the same stage objects and `Pipeline` that Ray Serve runs.

The CLI, the tests and offline evaluation use this; under Serve each stage object is a deployment
(deployments/) and the ingress runs the same `Pipeline` over their handles. Writes go to the Store
first and reach every stage through its `sync()`, the same path another process's writes take.
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
from llmrec.profiling.worker import ProfileWorker
from llmrec.serving.encoder import Encoder
from llmrec.serving.handles import LocalHandle
from llmrec.serving.pipeline import Pipeline
from llmrec.serving.ranker import Ranker
from llmrec.serving.schemas import EventIn, ItemIn, RecommendRequest, RecommendResponse
from llmrec.serving.users import Histories


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
        self.ranker = Ranker(self.config, catalog, self.store, self.encoder, rebuild_index)
        self.intent = IntentParser(self.config.intent, self.ranker.router.texts)
        self.pipeline = Pipeline(LocalHandle(self.intent), LocalHandle(self.encoder), LocalHandle(self.ranker), self.config)
        self.profiler = ProfileWorker(self.store, self.config.profiling)

    @property
    def items(self) -> dict[str, ItemRecord]:
        return self.ranker.items

    @property
    def indexes(self) -> dict[str, VectorIndex]:
        return self.ranker.retriever.indexes

    @property
    def histories(self) -> Histories:
        return self.ranker.users.histories

    def sync(self) -> int:
        """Catch up with writes made by any process."""
        return self.ranker.sync()

    def add_items(self, items: Sequence[ItemIn]) -> list[str]:
        """Embed, store durably, then index: each item is recommendable when this returns."""
        return self.ranker.add_items(items)

    def profile_new_items(self) -> int:
        """Write the LLM profiles of up to one batch of items that came without a title, in place
        (what the Profiler deployment does every `profiling.poll_s` under Serve); returns how many."""
        written = self.profiler.step()
        self.sync()
        return written

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        return self.ranker.remove_items(item_ids)

    def record_events(self, events: Sequence[EventIn]) -> int:
        """Store feedback durably; the user's next answer reflects it."""
        return self.ranker.record_events(events)

    def scenes(self) -> list[dict[str, Any]]:
        return self.ranker.scenes()

    def parse_intent(self, text: str) -> Intent:
        return asyncio.run(self.pipeline.parse_intent(text))

    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        return asyncio.run(self.pipeline.recommend(request))
