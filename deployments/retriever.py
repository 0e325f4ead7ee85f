"""Retriever deployment: the per-scene FAISS indexes and item writes, following the shared store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ray import serve
from ray.util.metrics import Gauge

from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.data.store import Store, follow
from llmrec.serving.encoder import Encoder
from llmrec.serving.retriever import Retrieved, Retriever
from llmrec.serving.schemas import Filters, ItemIn


@serve.deployment(name="Retriever", max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class RetrieverDeployment:
    def __init__(self, config: PipelineConfig) -> None:
        catalog = load_catalog(config.catalog)
        store = Store.open(config.store.url, catalog.name)
        self.retriever = Retriever(config, catalog, store, lambda: Encoder(config.encoder))
        self.index_items = Gauge("llmrec_index_items", "Items in each scene's index.", tag_keys=("scene",))
        self._stop = follow(self._sync, config.server.sync_interval_s)
        self._sync()

    def _sync(self) -> int:
        applied = self.retriever.sync()
        for scene, size in self.retriever.scene_sizes().items():
            self.index_items.set(size, tags={"scene": scene})
        return applied

    def search(self, scene: str, vector: np.ndarray | None, n: int, excluded: list[str], filters: Filters, extra_ids: list[str]) -> Retrieved:
        return self.retriever.search(scene, vector, n, excluded, filters, extra_ids)

    def add_items(self, items: Sequence[ItemIn], vectors: np.ndarray) -> list[str]:
        return self.retriever.add_items(items, vectors)

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        return self.retriever.remove_items(item_ids)

    def check_scenes(self, scenes: Sequence[str]) -> None:
        for scene in scenes:
            self.retriever.check_scene(scene)

    def scene_sizes(self) -> dict[str, int]:
        return self.retriever.scene_sizes()

    def ready(self) -> bool:
        return True

    def check_health(self) -> None:
        self.retriever.store.ping()

    def __del__(self) -> None:
        self._stop.set()
