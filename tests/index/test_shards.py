"""Sharding a scene's index by id hash: every item in exactly one shard, the same shard in every
process, and fan-out + merge over exact shards giving exactly the unsharded top k."""

from __future__ import annotations

import subprocess
import sys
import zlib

import numpy as np

from llmrec.config import IndexConfig
from llmrec.index.shards import merge, shard_of, split
from llmrec.index.vector_index import VectorIndex

DIM = 16


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_every_item_lands_in_exactly_one_shard_with_its_own_vector():
    ids = [f"item-{i}" for i in range(1000)]
    vectors = unit_vectors(1000, 0)
    parts = split(ids, vectors, 3)
    assert sorted(i for part_ids, _ in parts for i in part_ids) == sorted(ids)
    assert all(300 < len(part_ids) < 370 for part_ids, _ in parts)  # CRC-32 spreads ids evenly
    for number, (part_ids, part_vectors) in enumerate(parts):
        assert all(shard_of(i, 3) == number for i in part_ids)
        np.testing.assert_array_equal(part_vectors, vectors[[ids.index(i) for i in part_ids]])


def test_an_items_shard_is_the_same_in_another_process():
    ids = ["Victor/Victoria (1982)", "B000EVG8J2", "film-17", "电影"]
    other = subprocess.run(
        [sys.executable, "-c", f"from llmrec.index.shards import shard_of; print([shard_of(i, 7) for i in {ids!r}])"], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == str([shard_of(i, 7) for i in ids]) == str([zlib.crc32(i.encode()) % 7 for i in ids])


def test_fan_out_over_exact_shards_returns_exactly_the_unsharded_top_k_with_and_without_a_filter():
    ids = [f"item-{i}" for i in range(2000)]
    vectors = unit_vectors(2000, 1)
    whole = VectorIndex(DIM, IndexConfig(kind="flat"))
    whole.upsert(ids, vectors)
    shards = []
    for part_ids, part_vectors in split(ids, vectors, 4):
        shard = VectorIndex(DIM, IndexConfig(kind="flat"))
        shard.upsert(part_ids, part_vectors)
        shards.append(shard)
    allowed = set(ids[::7])
    for query in unit_vectors(20, 2):
        for k in (1, 10, 50):
            assert merge((s.search(query, k) for s in shards), k) == whole.search(query, k)
            assert merge((s.search(query, k, allowed.__contains__) for s in shards), k) == whole.search(query, k, allowed.__contains__)


def test_merge_breaks_score_ties_by_id_and_keeps_at_most_k():
    assert merge([[("b", 0.5), ("d", 0.1)], [("a", 0.5), ("c", 0.4)]], 3) == [("a", 0.5), ("b", 0.5), ("c", 0.4)]
    assert merge([[], []], 5) == []
