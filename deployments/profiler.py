"""Profiler deployment: one replica that profiles, in the background, the items written without a
title of their own (llmrec/profiling/worker.py), loading its model on the first such item.

One replica per store: the store's item log is its queue, so a second one would profile the same
items again. It follows the log every `profiling.poll_s` seconds; replicas of the Ranker pick its
writes up like any other write.
"""

from __future__ import annotations

from ray import serve

from deployments.stage import Ready
from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.data.store import Follower, Store
from llmrec.profiling.worker import ProfileWorker


@serve.deployment(name="Profiler", num_replicas=1, max_ongoing_requests=8, ray_actor_options={"num_cpus": 0})
class ProfilerDeployment(Ready):
    def __init__(self, config: PipelineConfig) -> None:
        self.worker = ProfileWorker(Store.open(config.store.url, load_catalog(config.catalog).name), config.profiling)
        running = config.profiling.background and config.profiling.backend != "none"
        self.follower = Follower(self.worker.step, config.profiling.poll_s) if running else None

    def check_health(self) -> None:
        """Healthy while it follows the store (a database that is away only delays profiles: no restart for it)."""
        if self.follower is not None and not self.follower.alive:
            raise RuntimeError("the profiling follower thread stopped: items written without a title are no longer profiled")

    def __del__(self) -> None:
        if getattr(self, "follower", None) is not None:  # not when __init__ failed before starting it
            self.follower.stop()
