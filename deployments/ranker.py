"""Ranker deployment: per-scene indexes, scene vectors, user state and ranking, following the store.

One deployment because retrieval and ranking share the catalog's state: a request's candidates and
their vectors stay in the replica that found them. It scales on its own (CPU and memory bound).
"""

from __future__ import annotations

import os

import ray
from ray import serve
from ray.util.metrics import Gauge

from deployments.metrics import ServiceMetrics
from deployments.stage import Ready
from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.data.placement import check_store_for_cluster, declares_one_machine
from llmrec.data.store import Follower, Store
from llmrec.serving.encoder import Encoder
from llmrec.serving.ranker import Ranker


@serve.deployment(name="Ranker", max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class RankerDeployment(Ranker, Ready):
    def __init__(self, config: PipelineConfig) -> None:
        # SQLite on a cluster of several machines loses writes: refuse before opening it (llmrec/data/placement.py).
        alive = len([n for n in ray.nodes() if n["Alive"]])
        check_store_for_cluster(config.store.url, alive, one_machine=declares_one_machine(os.environ))
        catalog = load_catalog(config.catalog)
        store = Store.open(config.store.url, catalog.name)
        # Background profiles are written without embeddings, and each Ranker embeds them while it syncs, under the
        # index lock: its encoder loads at start then, not on the first such item in the middle of requests.
        profiled = config.profiling.background and config.profiling.backend != "none"
        encoder = Encoder(config.encoder) if profiled else (lambda: Encoder(config.encoder))
        super().__init__(config, catalog, store, encoder, observe=ServiceMetrics().stage)
        self.index_items = Gauge("llmrec_index_items", "Items in each scene's index.", tag_keys=("scene",))
        self.follower = Follower(self.sync, config.server.sync_interval_s)
        self.sync()

    def sync(self) -> int:
        applied = super().sync()
        for scene, size in self.retriever.scene_sizes().items():
            self.index_items.set(size, tags={"scene": scene})
        return applied

    def check_health(self) -> None:
        """Healthy while it follows the store. Not a database ping: with the database away a replica still
        answers from the writes it applied, and restarting it then would take that away too."""
        if not self.follower.alive:
            raise RuntimeError("the store follower thread stopped: writes made elsewhere no longer reach this replica")

    def __del__(self) -> None:
        if getattr(self, "follower", None) is not None:  # not when __init__ failed before starting it
            self.follower.stop()
