"""A scene's index split across shards by item id hash, searched by fan-out and merged top-k.

The path past one machine (docs/scale.md): when a scene's index no longer fits one replica's
memory, each of `n` shards holds the items whose id hashes to it, in its own `VectorIndex` (its kind
chosen for its own size), and a search asks every shard for its top k and keeps the best k of the
union. That union holds the exact top k of whatever each shard returns, so recall is that of the
shards' own searches. The hash is CRC-32 of the id, stable across processes and machines (Python's
`hash` is salted per process). Pure: who holds a shard and how it is called (a Ray actor per node,
`deployments/shard.py`) is the caller's.
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

Hits = list[tuple[str, float]]


def shard_of(item_id: str, shards: int) -> int:
    """The shard that holds `item_id` among `shards`."""
    return zlib.crc32(item_id.encode()) % shards


def split(item_ids: Sequence[str], vectors: np.ndarray, shards: int) -> list[tuple[list[str], np.ndarray]]:
    """Each shard's (ids, vectors), in input order within a shard."""
    owner = np.fromiter((shard_of(i, shards) for i in item_ids), dtype=np.int64, count=len(item_ids))
    ids = np.asarray(item_ids, dtype=object)
    return [(ids[owner == s].tolist(), vectors[owner == s]) for s in range(shards)]


def merge(results: Iterable[Hits], k: int) -> Hits:
    """The best k of every shard's hits, best first (ties by id, so the order is deterministic)."""
    return heapq.nsmallest(k, itertools.chain.from_iterable(results), key=lambda hit: (-hit[1], hit[0]))

