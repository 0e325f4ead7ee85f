"""The content-to-collaborative bridge of the served blend, against its definition computed naively,
and what it is for: a cold item like the warm items a user's collaborative scores favour ranks above
one like the items they disfavour."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmrec.data.items import ItemRecord
from llmrec.serving.collaborative import ItemItemModel
from llmrec.serving.signals import BRIDGE_ALPHA, SceneSignals, _features, _vocabulary


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def scene(rng: np.random.Generator, n: int = 60) -> tuple[list[ItemRecord], np.ndarray, pd.DataFrame]:
    """Warm items of two kinds (genre A near one direction, genre B near another), each user liking one kind."""
    directions = unit(rng, 2)
    kinds = np.arange(n) % 2
    vectors = directions[kinds] + 0.3 * unit(rng, n)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [ItemRecord(f"w{i}", "movie", f"W{i}", attributes={"genres": ["A" if k == 0 else "B"]}) for i, k in enumerate(kinds)]
    pairs = [(f"u{u}", f"w{i}") for u in range(40) for i in range(n) if kinds[i] == u % 2 and rng.random() < 0.4]
    return records, vectors.astype(np.float32), pd.DataFrame(pairs, columns=["user_id", "item_id"])


def test_the_bridge_is_a_ridge_regression_of_the_users_scores_on_the_warm_items_content():
    rng = np.random.default_rng(7)
    records, vectors, interactions = scene(rng)
    model = ItemItemModel.fit(interactions, l2=10.0)
    signals = SceneSignals.fit(records, vectors, interactions, {}, model)
    scores = model.scores(["w0", "w2", "w4"])
    candidates = [ItemRecord("cold-a", "movie", "Cold A", attributes={"genres": ["A"]}), ItemRecord("cold-b", "movie", "Cold B", attributes={"genres": ["B"]})]
    candidate_vectors = unit(rng, 2)
    got = signals.bridge(candidates, candidate_vectors, scores)

    vocabulary = _vocabulary(records)
    warm = _features([r for r in records if r.item_id in model.position], vectors[[r.item_id in model.position for r in records]], vocabulary).astype(np.float64)
    target = np.array([scores[model.position[r.item_id]] for r in records if r.item_id in model.position], np.float64)
    beta = np.linalg.solve(warm.T @ warm + BRIDGE_ALPHA * np.eye(warm.shape[1]), warm.T @ target)
    np.testing.assert_allclose(got, _features(candidates, candidate_vectors, vocabulary) @ beta, rtol=1e-4, atol=1e-5)


def test_a_cold_item_like_what_the_users_collaborative_scores_favour_ranks_above_one_like_the_rest():
    rng = np.random.default_rng(11)
    records, vectors, interactions = scene(rng)
    model = ItemItemModel.fit(interactions, l2=10.0)
    signals = SceneSignals.fit(records, vectors, interactions, {}, model)
    likes_a = model.scores(["w0", "w2", "w4", "w6"])  # a user who liked genre-A items
    cold = [ItemRecord("cold-a", "movie", "Cold A", attributes={"genres": ["A"]}), ItemRecord("cold-b", "movie", "Cold B", attributes={"genres": ["B"]})]
    cold_vectors = np.vstack([vectors[10], vectors[11]])  # content like an A item and like a B item
    a, b = signals.bridge(cold, cold_vectors, likes_a)
    assert a > b
    assert not signals.bridge([], np.zeros((0, 16), np.float32), likes_a).size
    without = SceneSignals.fit(records, vectors, interactions, {}, None)  # no collaborative model: no bridge
    assert not without.bridge(cold, cold_vectors, likes_a).any()
