"""VectorIndex mechanics on seeded random unit vectors (real encoder vectors are not needed here)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.config import IndexConfig
from llmrec.index.vector_index import VectorIndex, auto_table, read_index_meta, resolve

DIM = 32
N = 500
IVF_NLIST = 8  # 500 >= 39 * 8 vectors to train on, and nlist <= nprobe: every list is probed, so search is exhaustive
KINDS = ["flat", "hnsw", "ivf"]


def unit_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ids(n: int) -> list[str]:
    return [f"item-{i}" for i in range(n)]


def build(kind: str, n: int = N, seed: int = 0, **config) -> tuple[VectorIndex, np.ndarray]:
    vectors = unit_vectors(n, seed)
    index = VectorIndex(DIM, IndexConfig(kind=kind, **{"ivf_nlist": IVF_NLIST, **config}))
    index.upsert(ids(n), vectors)
    return index, vectors


@pytest.mark.parametrize("kind", KINDS)
def test_every_vector_retrieves_itself_first(kind):
    index, vectors = build(kind)
    assert index.kind == kind and len(index) == N
    for i, vector in enumerate(vectors):
        (top_id, top_score), *_ = index.search(vector, 3)
        assert top_id == f"item-{i}"
        assert top_score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_search_returns_k_hits_best_first(kind):
    index, vectors = build(kind)
    query = unit_vectors(1, seed=99)[0]
    hits = index.search(query, 10)
    assert len(hits) == 10
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    # Exhaustive here, so the hits are the true top 10 by inner product.
    truth = np.argsort(-(vectors @ query))[:10]
    assert [h for h, _ in hits] == [f"item-{i}" for i in truth]


@pytest.mark.parametrize("kind", KINDS)
def test_upsert_replaces_the_old_vector(kind):
    index, vectors = build(kind)
    replacement = -vectors[1]  # far from item-0's old vector
    index.upsert(["item-0"], replacement[None, :])
    assert len(index) == N
    old_hits = [i for i, _ in index.search(vectors[0], 5)]
    assert "item-0" not in old_hits  # the old neighbour is gone
    (top_id, top_score), *_ = index.search(replacement, 1)
    assert top_id == "item-0" and top_score == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(index.vectors(["item-0"])[0], replacement, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_remove_by_id_drops_the_item_and_ignores_unknown_ids(kind):
    index, vectors = build(kind)
    assert index.remove(["item-2", "no-such-item"]) == 1
    assert "item-2" not in index and "item-3" in index
    assert len(index) == N - 1
    hits = [i for i, _ in index.search(vectors[2], 50)]
    assert "item-2" not in hits
    assert len(hits) == 50
    assert index.remove(["item-2"]) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_filtered_search_still_returns_k_when_enough_items_pass(kind):
    # 1 item in 25 passes: the first fetch (k * overfetch = 40) cannot hold 10 of them, so the
    # search must double its fetch until 10 survive.
    index, vectors = build(kind, overfetch=4)
    passing = {f"item-{i}" for i in range(0, N, 25)}
    hits = index.search(vectors[7], 10, allow=lambda item_id: item_id in passing)
    assert len(hits) == 10
    assert all(i in passing for i, _ in hits)
    truth = sorted(passing, key=lambda i: -float(vectors[int(i.split("-")[1])] @ vectors[7]))[:10]
    assert [i for i, _ in hits] == truth


@pytest.mark.parametrize("kind", KINDS)
def test_filtered_search_returns_fewer_when_fewer_pass(kind):
    index, vectors = build(kind)
    passing = {"item-5", "item-444", "item-123"}
    hits = index.search(vectors[0], 10, allow=lambda item_id: item_id in passing)
    assert {i for i, _ in hits} == passing
    assert index.search(vectors[0], 10, allow=lambda item_id: False) == []


@pytest.mark.parametrize("kind", KINDS)
def test_save_then_load_gives_identical_results_and_keeps_metadata(kind, tmp_path):
    index, vectors = build(kind)
    index.remove(["item-10"])
    index.upsert(["item-11"], unit_vectors(1, seed=7))
    index.save(tmp_path, {"encoder": "test-encoder", "scene": "movie"})
    loaded = VectorIndex.load(tmp_path)
    assert loaded.kind == kind
    assert sorted(loaded.item_ids) == sorted(index.item_ids)
    for query in unit_vectors(20, seed=3):
        assert loaded.search(query, 10) == index.search(query, 10)
    np.testing.assert_array_equal(loaded.vectors(["item-11", "item-0"]), index.vectors(["item-11", "item-0"]))
    meta = read_index_meta(tmp_path)
    assert meta["encoder"] == "test-encoder" and meta["scene"] == "movie"
    assert meta["kind"] == kind and meta["dim"] == DIM and meta["count"] == N - 1
    # A loaded index keeps taking writes without colliding with old ids.
    fresh = unit_vectors(1, seed=11)
    loaded.upsert(["new-item"], fresh)
    assert loaded.search(fresh[0], 1)[0][0] == "new-item"
    assert loaded.search(vectors[0], 1)[0][0] == "item-0"


@pytest.mark.parametrize("kind", KINDS)
def test_vectors_returns_the_stored_vectors_in_the_order_asked(kind):
    index, vectors = build(kind)
    got = index.vectors(["item-9", "item-1", "item-400"])
    np.testing.assert_allclose(got, vectors[[9, 1, 400]], atol=1e-6)
    assert index.vectors([]).shape == (0, DIM)


def test_empty_index_searches_to_nothing():
    index = VectorIndex(DIM, IndexConfig(kind="flat"))
    assert index.search(unit_vectors(1, 0)[0], 5) == []


def test_upsert_rejects_a_repeated_id_in_one_batch():
    index = VectorIndex(DIM, IndexConfig(kind="flat"))
    with pytest.raises(ValueError, match="same item id twice"):
        index.upsert(["a", "a"], unit_vectors(2, 0))


def test_auto_kind_is_exact_below_the_measured_sizes_then_takes_the_choice_of_the_smallest_measured_size_at_or_above():
    rows = auto_table()
    assert rows == sorted(rows, key=lambda r: r["size"]) and rows
    assert resolve(IndexConfig(kind="auto"), 0).kind == resolve(IndexConfig(kind="auto"), rows[0]["size"] - 1).kind == "flat"
    assert resolve(IndexConfig(kind="auto"), rows[0]["size"]).kind == rows[0]["kind"]
    for below, row in zip([r["size"] for r in rows], rows[1:]):
        for size in (below + 1, row["size"]):
            chosen = resolve(IndexConfig(kind="auto"), size)
            assert chosen.kind == row["kind"]
            assert all(getattr(chosen, name) == value for name, value in row["params"].items())
    assert resolve(IndexConfig(kind="auto"), rows[-1]["size"] * 10).kind == rows[-1]["kind"]
    assert VectorIndex(DIM, IndexConfig(kind="ivf"), expected_size=1).kind == "ivf"


def test_ivf_stays_exact_until_it_holds_enough_vectors_to_train_its_lists():
    vectors = unit_vectors(N, 0)
    index = VectorIndex(DIM, IndexConfig(kind="ivf", ivf_nlist=IVF_NLIST))
    for i in range(0, 300, 30):  # items arriving a few at a time, as over HTTP
        index.upsert(ids(N)[i : i + 30], vectors[i : i + 30])
    assert index.kind == "ivf" and index.structure == "flat"
    index.upsert(ids(N)[300:], vectors[300:])
    assert index.structure == "ivf" and index._index.is_trained and index._index.nlist == IVF_NLIST
    assert len(index) == N and [index.search(v, 1)[0][0] for v in vectors[::50]] == ids(N)[::50]


def test_hnsw_is_rebuilt_without_its_tombstones_once_they_pass_the_compact_fraction():
    index, vectors = build("hnsw", hnsw_compact_fraction=0.25)
    index.remove(ids(N)[:100])  # 100 of 500: under a quarter, kept as tombstones
    assert index._index.ntotal == N and len(index) == N - 100
    index.upsert(ids(N)[100:130], vectors[100:130])  # replacing a vector leaves one more tombstone
    assert index._index.ntotal == N + 30
    index.remove(ids(N)[130:150])  # 150 tombstones of 530 vectors: over a quarter
    assert index._index.ntotal == len(index) == N - 120
    assert [index.search(v, 1)[0][0] for v in vectors[150::50]] == ids(N)[150::50]
    assert all(index.search(v, 1)[0][0] != f"item-{i}" for i, v in enumerate(vectors[:100]))


def test_a_saved_index_is_rebuilt_from_its_own_vectors_when_the_config_now_wants_another_kind(tmp_path):
    index, vectors = build("flat")
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, IndexConfig(kind="hnsw", hnsw_ef_search=64))
    assert loaded.kind == "hnsw" and loaded.structure == "hnsw" and len(loaded) == N
    assert [loaded.search(v, 1)[0][0] for v in vectors[::25]] == ids(N)[::25]
    loaded.save(tmp_path)
    assert read_index_meta(tmp_path)["params"] == {"hnsw_m": 32}
    assert VectorIndex.load(tmp_path, IndexConfig(kind="hnsw", hnsw_ef_search=16)).config.hnsw_ef_search == 16


def test_ivfpq_stays_exact_until_its_codebooks_can_train_then_searches_approximately():
    n = 39 * 256  # FAISS trains each 8-bit sub-quantizer's 256 codes on 39 vectors apiece
    vectors = unit_vectors(n, 0)
    index = VectorIndex(DIM, IndexConfig(kind="ivfpq", pq_m=8, ivf_nlist=4, ivf_nprobe=4))
    index.upsert(ids(n)[:-1], vectors[:-1])
    assert index.structure == "flat"
    index.upsert(ids(n)[-1:], vectors[-1:])
    assert index.structure == "ivfpq"
    exact = VectorIndex(DIM, IndexConfig(kind="flat"))
    exact.upsert(ids(n), vectors)
    queries = unit_vectors(50, seed=5)
    recall = np.mean([len({h for h, _ in index.search(q, 10)} & {h for h, _ in exact.search(q, 10)}) / 10 for q in queries])
    assert recall > 0.3  # 8 bytes per 32-d vector: lossy, but far from random (10 in 9,984)
    index.remove(["item-0"])
    index.upsert(["new"], vectors[:1])
    assert "item-0" not in index and index.search(vectors[0], 1)[0][0] == "new"


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_use_gpu_on_cpu_only_faiss_keeps_searching_on_cpu(kind):
    index, vectors = build(kind, use_gpu=True)
    assert index.search(vectors[4], 1)[0][0] == "item-4"
    assert index.device == "cpu"


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_an_index_saved_before_any_upsert_loads_and_takes_items(kind, tmp_path):
    VectorIndex(DIM, IndexConfig(kind=kind)).save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert len(loaded) == 0
    vector = unit_vectors(1, 0)
    loaded.upsert(["first"], vector)
    assert loaded.search(vector[0], 1)[0][0] == "first"


def test_an_empty_ivf_index_can_be_saved(tmp_path):
    VectorIndex(DIM, IndexConfig(kind="ivf")).save(tmp_path)
    assert read_index_meta(tmp_path)["count"] == 0
