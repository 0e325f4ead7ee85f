"""The content-to-collaborative bridge of the served blend, against its definition computed naively."""

from __future__ import annotations

import numpy as np

from llmrec.serving.signals import BRIDGE_NEIGHBOURS, SceneSignals


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def naive_bridge(warm_ids: list[str], warm: np.ndarray, item_id: str, vector: np.ndarray, user: dict[str, float]) -> float:
    """The similarity-weighted mean of the user's (non-negative) scores over the item's nearest warm items, itself left out."""
    similarity = warm @ vector
    order = [p for p in np.argsort(-similarity, kind="stable") if warm_ids[p] != item_id][:BRIDGE_NEIGHBOURS]
    weights = np.maximum(similarity[order], 0.0)
    scores = np.array([max(user.get(warm_ids[p], 0.0), 0.0) for p in order])
    return float(scores @ weights / weights.sum()) if weights.sum() > 0 else 0.0


def test_the_bridge_is_the_weighted_mean_of_the_users_scores_over_each_items_nearest_warm_items():
    rng = np.random.default_rng(7)
    warm_ids = [f"w{i}" for i in range(300)]
    warm = unit(rng, 300)
    signals = SceneSignals(warm_ids, warm, {}, None, {}, {})
    user = {w: float(s) for w, s in zip(warm_ids, rng.standard_normal(300))}
    candidates = ["w3", "cold-a", "w250", "cold-b"]  # warm candidates leave themselves out
    vectors = np.vstack([warm[3], unit(rng, 1)[0], warm[250], unit(rng, 1)[0]])
    got = signals.bridge(candidates, vectors, lambda ids: np.array([user[i] for i in ids], np.float32))
    expected = [naive_bridge(warm_ids, warm, c, v, user) for c, v in zip(candidates, vectors)]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    moved = unit(rng, 1)[0]  # an item whose vector changed gets new neighbours, not the cached ones
    again = signals.bridge(["cold-a"], moved[None, :], lambda ids: np.array([user[i] for i in ids], np.float32))
    np.testing.assert_allclose(again, [naive_bridge(warm_ids, warm, "cold-a", moved, user)], rtol=1e-4, atol=1e-6)
