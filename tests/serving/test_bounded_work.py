"""Bounded work per request: capped request collections, filters compiled once, a bounded
over-fetch in filtered vector search, and explanations that read only the weights they need."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pydantic import ValidationError

from llmrec.config import IndexConfig
from llmrec.data import items as items_module
from llmrec.data.items import ItemRecord, allow_filter
from llmrec.errors import describe_validation_error
from llmrec.index.vector_index import VectorIndex
from llmrec.serving.collaborative import ItemItemModel
from llmrec.serving.schemas import Filters, RecommendRequest


def rejected(**fields) -> str:
    with pytest.raises(ValidationError) as caught:
        RecommendRequest(**fields)
    return describe_validation_error(caught.value)


# ---- caps on every collection and string of a request --------------------------------------


def test_a_filter_with_20000_values_is_rejected_naming_the_key_and_the_limit():
    started = time.perf_counter()
    message = rejected(query="x", filters={"attributes": {"genres": [f"g{i}" for i in range(20_000)]}})
    assert message.startswith("filters.attributes: ")
    assert "'genres'" in message and "at most 100 values" in message and "20000" in message
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"attributes": {f"k{i}": "v" for i in range(21)}}, "at most 20 attribute keys"),
        ({"attributes": {"k" * 101: "v"}}, "at most 100 characters"),
        ({"attributes": {"director": "x" * 201}}, "at most 200 characters"),
        ({"attributes": {"year": 2**60}}, "integers within"),
        ({"attributes": {"rating": float("nan")}}, "finite"),
        ({"attributes": {"rating": [1.0, float("inf")]}}, "finite"),
        ({"attributes": {"genres": None}}, "a string, number or boolean, or a list of them"),
        ({"attributes": {"genres": [{"nested": 1}]}}, "a string, number or boolean, or a list of them"),
        ({"ranges": {f"r{i}": {"min": 0} for i in range(21)}}, "at most 20 items"),
        ({"ranges": {"r" * 101: {"min": 0}}}, "at most 100 characters"),
        ({"exclude_item_ids": [f"i{n}" for n in range(1001)]}, "at most 1000 items"),
        ({"exclude_item_ids": ["x" * 301]}, "at most 300 characters"),
    ],
)
def test_every_filter_collection_and_string_is_capped(filters, expected):
    message = rejected(query="x", filters=filters)
    assert message.startswith("filters.") and expected in message, message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"history": [f"i{n}" for n in range(501)]}, "history: List should have at most 500 items"),
        ({"history": ["x" * 301]}, "history.0: String should have at most 300 characters"),
        ({"user_id": "u" * 201}, "user_id: String should have at most 200 characters"),
        ({"profile": {f"p{i}": 1 for i in range(51)}}, "at most 50 entries"),
        ({"profile": {"about": "x" * 201}}, "at most 200 characters"),
        ({"profile": {"age": float("nan")}}, "finite"),
        ({"profile": {"tags": ["a", "b"]}}, "a string, number or boolean"),
    ],
)
def test_request_collections_and_ids_are_capped(fields, expected):
    message = rejected(query="x", **fields)
    assert expected in message, message


def test_requests_at_every_cap_are_accepted():
    request = RecommendRequest(
        user_id="u" * 200,
        query="x",
        history=["h" * 300] * 500,
        profile={f"p{i}": "v" * 200 for i in range(50)},
        filters={
            "attributes": {f"k{i}": [f"v{j}" for j in range(100)] for i in range(20)},
            "ranges": {f"r{i}": {"min": -(2**53), "max": 2**53} for i in range(20)},
            "exclude_item_ids": [f"i{n}" for n in range(1000)],
        },
    )
    assert len(request.filters.attributes) == 20 and request.filters.attributes["k0"][99] == "v99"
    assert RecommendRequest(query="x", filters={"attributes": {"year": 1995, "genres": ["Drama", 3, 2.5, True]}}).filters.attributes["year"] == 1995


# ---- filters compiled once: matching costs O(items), not O(items x wanted values) ----------


def catalog_items(n: int) -> dict[str, ItemRecord]:
    return {
        f"i{k}": ItemRecord(f"i{k}", "movie", f"Title {k}", attributes={"genres": ["Drama", "Crime"], "year": 1990 + k % 20, "language": "English"})
        for k in range(n)
    }


def test_matching_work_does_not_grow_with_the_number_of_wanted_values(monkeypatch):
    calls = []
    real = items_module._comparable
    monkeypatch.setattr(items_module, "_comparable", lambda value: calls.append(1) or real(value))
    items = catalog_items(1000)
    filters = Filters(attributes={"genres": [f"g{i}" for i in range(99)] + ["crime"], "language": "english"})
    allow = allow_filter(items, [], filters)
    assert all(allow(i) for i in items)
    # Wanted values are lower-cased once (101), then each item's own values once each (3 per item).
    assert len(calls) <= 101 + 1000 * 3, len(calls)


def test_a_filter_at_the_caps_over_20000_items_is_matched_quickly():
    items = {f"i{k}": ItemRecord(f"i{k}", "movie", "T", attributes={f"k{i}": [f"V{(k + i) % 100}", "other"] for i in range(20)} | {"year": 1990 + k % 20}) for k in range(20_000)}
    filters = Filters(attributes={f"k{i}": [f"v{j}" for j in range(100)] for i in range(20)}, ranges={"year": {"min": 1990, "max": 2004}})
    started = time.perf_counter()
    allow = allow_filter(items, ["i0"], filters)
    passed = sum(allow(i) for i in items)
    elapsed = time.perf_counter() - started
    assert passed == 15_000 - 1  # every key matches; the range keeps 15 years in 20; i0 is excluded
    assert elapsed < 2.0, elapsed  # rebuilding the wanted sets item by item: 20 x 100 values per item


# ---- filtered vector search: a bounded over-fetch, then the allowed items scored exactly -----

DIM, N = 32, 6000


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivf"])
def big_index(request):
    vectors = unit_vectors(N, seed=0)
    index = VectorIndex(DIM, IndexConfig(kind=request.param))
    index.upsert([f"item-{i}" for i in range(N)], vectors)
    return index, vectors


def spy_fetches(index: VectorIndex, monkeypatch) -> list[int]:
    """Every `k` the index asks FAISS for."""
    fetches: list[int] = []
    real = index._searcher

    class Recording:
        def __init__(self, inner):
            self.inner = inner

        def search(self, query, k, *args, **kwargs):
            fetches.append(k)
            return self.inner.search(query, k, *args, **kwargs)

    monkeypatch.setattr(index, "_searcher", lambda: Recording(real()))
    return fetches


def test_a_filter_that_matches_nothing_never_fetches_the_whole_index(big_index, monkeypatch):
    index, vectors = big_index
    fetches = spy_fetches(index, monkeypatch)
    assert index.search(vectors[0], 10, allow=lambda item_id: False) == []
    assert fetches and max(fetches) <= IndexConfig().max_examined < N


def test_a_filter_passing_only_far_items_still_finds_them_in_exact_order(big_index, monkeypatch):
    index, vectors = big_index
    fetches = spy_fetches(index, monkeypatch)
    query = vectors[1]
    order = np.argsort(-(vectors @ query))
    passing = {f"item-{i}" for i in order[-5:]}  # the five least similar items
    hits = index.search(query, 10, allow=lambda item_id: item_id in passing)
    assert [h for h, _ in hits] == [f"item-{i}" for i in order[-5:]]
    np.testing.assert_allclose([s for _, s in hits], (vectors @ query)[order[-5:]], atol=1e-5)
    assert max(fetches) <= IndexConfig().max_examined


def test_an_exact_index_still_answers_loose_filters_exactly():
    vectors = unit_vectors(N, seed=0)
    index = VectorIndex(DIM, IndexConfig(kind="flat"))
    index.upsert([f"item-{i}" for i in range(N)], vectors)
    query = unit_vectors(1, seed=5)[0]
    hits = index.search(query, 20, allow=lambda item_id: item_id != "item-3")
    truth = [i for i in np.argsort(-(vectors @ query)) if i != 3][:20]
    assert [h for h, _ in hits] == [f"item-{i}" for i in truth]
    assert [h for h, _ in index.search(query, 20)] == [f"item-{i}" for i in np.argsort(-(vectors @ query))[:20]]


# ---- collaborative weights: explain and rank read only what they need ------------------------


class Recorded(np.ndarray):
    """A weight matrix that records the size of every read."""

    reads: list[int]

    def __getitem__(self, key):
        out = super().__getitem__(key)
        Recorded.reads.append(int(np.size(out)))
        return out


def recorded(model: ItemItemModel) -> ItemItemModel:
    Recorded.reads = []
    model.weights = np.asarray(model.weights).view(Recorded)
    return model


def dense_model(n: int = 2000) -> ItemItemModel:
    weights = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return ItemItemModel([f"i{k:05d}" for k in range(n)], weights, "ease")


def test_strongest_source_reads_one_weight_per_history_item():
    model = recorded(dense_model())
    history = [f"i{k:05d}" for k in range(0, 2000, 10)]
    target = "i01234"
    rows = [model.position[h] for h in history]
    column = np.asarray(model.weights).view(np.ndarray)[rows, model.position[target]]
    expected = history[int(np.argmax(column))] if column.max() > 0 else None
    Recorded.reads = []
    assert model.strongest_source(history, target) == expected
    assert max(Recorded.reads) <= len(history), max(Recorded.reads)


def test_candidate_scores_read_history_by_candidates_and_equal_the_full_scores():
    model = dense_model()
    history = [f"i{k:05d}" for k in range(0, 2000, 7)]
    candidates = [f"i{k:05d}" for k in range(3, 2000, 13)] + ["unknown-item"]
    full = model.scores(history)
    recorded(model)
    scores = model.scores_of(history, candidates)
    np.testing.assert_allclose(scores[:-1], full[[model.position[c] for c in candidates[:-1]]], rtol=1e-5, atol=1e-4)
    assert scores[-1] == 0.0 and scores.dtype == np.float32
    assert max(Recorded.reads) <= len(history) * len(candidates)
    assert not model.scores_of([], candidates).any() and not model.scores_of(["unknown-item"], candidates).any()


def test_ranking_a_warm_user_reads_weights_in_proportion_to_history_and_candidates(demo, demo_catalog):
    ranker = demo.ranker
    counts = demo_catalog.interactions["user_id"].value_counts()
    user = str(counts.index[0])  # the heaviest rater in the demo catalog
    request = RecommendRequest(user_id=user, scene="movie", k=20)
    context = ranker.prepare(request)
    retrieved = ranker.retriever.search("movie", None, 200, context.excluded, request.filters, ranker.users.candidate_ids("movie", context, request.filters, False))
    model = ranker.users.collab["movie"]
    weights = model.weights
    history = ranker.users.scene_history("movie", context)
    try:
        recorded(model)
        items, method = ranker.rank("movie", request, context, retrieved, 20, has_text=False)
    finally:
        model.weights = weights
    assert method == "ease" and len(items) == 20
    assert any(r.startswith("people who liked") for item in items for r in item.reasons)
    assert max(Recorded.reads) <= len(set(history)) * len(retrieved.item_ids) < np.size(weights)


@pytest.mark.parametrize("max_dense_items", [20_000, 1], ids=["ease", "cooccurrence"])
def test_candidate_scores_and_sources_agree_with_the_full_scores_for_both_models(max_dense_items):
    import pandas as pd

    rng = np.random.default_rng(1)
    pairs = pd.DataFrame({"user_id": rng.integers(0, 60, 600).astype(str), "item_id": [f"i{n:03d}" for n in rng.integers(0, 80, 600)]})
    model = ItemItemModel.fit(pairs, l2=5.0, max_dense_items=max_dense_items)
    history = ["i001", "i007", "i001", "i033", "unknown-item"]
    candidates = model.item_ids[::3] + ["unknown-item"]
    full = model.scores(history)
    np.testing.assert_allclose(model.scores_of(history, candidates)[:-1], full[[model.position[c] for c in candidates[:-1]]], rtol=1e-5, atol=1e-6)
    dense = model.weights.toarray() if hasattr(model.weights, "toarray") else np.asarray(model.weights)
    known = ["i001", "i007", "i033"]
    for item in candidates[:-1]:
        column = [dense[model.position[h], model.position[item]] for h in known]
        expected = known[int(np.argmax(column))] if max(column) > 0 else None
        assert model.strongest_source(history, item) == expected
