"""Index shards as Ray actors, one per node: a scene's index past one machine (docs/scale.md).

Each `IndexShard` holds the items whose id hashes to it (`llmrec.index.shards`) in its own
`VectorIndex`; `RayShards` places one per node, sends every query to all of them at once and merges
their top k. `llmrec bench shards` measures it on a local multi-node Ray cluster against one shard
holding everything.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psutil
import ray

from llmrec.config import IndexConfig
from llmrec.index.shards import Hits, merge
from llmrec.index.vector_index import VectorIndex


@ray.remote(num_cpus=1)
class IndexShard:
    """One shard's index, and the ids a filter allows (the benchmark's year filter)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = IndexConfig(**config)
        self.index: VectorIndex | None = None
        self.allowed: set[str] = set()

    def load(self, item_ids: list[str], vectors: np.ndarray, allowed: list[str]) -> float:
        """Build the index over this shard's items; returns the seconds it took."""
        start = time.perf_counter()
        self.index = VectorIndex(vectors.shape[1], self.config, expected_size=len(item_ids))
        self.index.upsert(item_ids, vectors)
        self.allowed = set(allowed)
        return time.perf_counter() - start

    def search(self, query: np.ndarray, k: int, filtered: bool = False) -> Hits:
        return self.index.search(query, k, self.allowed.__contains__ if filtered else None)

    def describe(self) -> dict[str, Any]:
        return {"node": ray.get_runtime_context().get_node_id(), "rss_mb": psutil.Process().memory_info().rss / 2**20, "items": len(self.index), "kind": self.index.kind}


class RayShards:
    """`n` shards, shard i on the node that offers the custom resource `node{i}`."""

    def __init__(self, n: int, config: IndexConfig) -> None:
        self.shards = [IndexShard.options(resources={f"node{i}": 1}).remote(config.model_dump()) for i in range(n)]

    def load(self, parts: list[tuple[list[str], np.ndarray]], allowed: set[str]) -> list[float]:
        return ray.get([shard.load.remote(ids, vectors, [i for i in ids if i in allowed]) for shard, (ids, vectors) in zip(self.shards, parts)])

    def search(self, query: np.ndarray, k: int, filtered: bool = False) -> Hits:
        return merge(ray.get([shard.search.remote(query, k, filtered) for shard in self.shards]), k)

    def describe(self) -> list[dict[str, Any]]:
        return ray.get([shard.describe.remote() for shard in self.shards])

    def close(self) -> None:
        for shard in self.shards:
            ray.kill(shard)
