"""The served blend: min-max blending of signals with default or trained weights, and MMR diversification."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.config import RerankConfig
from llmrec.errors import AssetError
from llmrec.serving.blend import FEW_HISTORY, Blend, Candidate, TrainedBlend, Weights, _minmax, mmr, request_mode
from llmrec.serving.cross_encoder import rescore_head


def test_minmax_scales_to_zero_one():
    np.testing.assert_allclose(_minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(_minmax(np.array([-1.0, 1.0])), [0.0, 1.0])


def test_minmax_of_constant_or_empty_values_is_zeros():
    np.testing.assert_array_equal(_minmax(np.array([3.0, 3.0, 3.0])), [0.0, 0.0, 0.0])
    assert _minmax(np.array([])).shape == (0,)


def candidates() -> list[Candidate]:
    return [
        Candidate("x", semantic=1.0, collaborative=0.0, popularity=0.0),
        Candidate("y", semantic=0.0, collaborative=1.0, popularity=0.5),
        Candidate("z", semantic=0.5, collaborative=0.5, popularity=1.0),
    ]


def default_blend(config: RerankConfig, has_text: bool, has_history: bool) -> np.ndarray:
    reranker = Blend(config)
    return reranker.blend(candidates(), reranker.weights("movie", "history", has_text, has_history).signals)


def test_blend_mixes_the_scaled_signals_with_the_configured_weights():
    blended = default_blend(RerankConfig(semantic_weight=2.0, collaborative_weight=1.0, popularity_weight=1.0), True, True)
    np.testing.assert_allclose(blended, [(2 * 1.0 + 0 + 0) / 4, (0 + 1.0 + 0.5) / 4, (2 * 0.5 + 0.5 + 1.0) / 4])


def test_blend_ignores_collaborative_signal_without_history():
    blended = default_blend(RerankConfig(semantic_weight=1.0, collaborative_weight=5.0, popularity_weight=1.0), True, False)
    np.testing.assert_allclose(blended, [(1.0 + 0) / 2, (0 + 0.5) / 2, (0.5 + 1.0) / 2])


def test_blend_ignores_semantic_signal_without_text():
    blended = default_blend(RerankConfig(semantic_weight=5.0, collaborative_weight=1.0, popularity_weight=1.0), False, True)
    np.testing.assert_allclose(blended, [(0 + 0) / 2, (1.0 + 0.5) / 2, (0.5 + 1.0) / 2])


def test_blend_with_all_weights_zero_is_zero_not_nan():
    np.testing.assert_array_equal(default_blend(RerankConfig(semantic_weight=0, collaborative_weight=0, popularity_weight=0), True, True), [0.0, 0.0, 0.0])


def test_trained_weights_replace_the_defaults_for_their_scene_and_mode_only(tmp_path):
    trained = TrainedBlend({"movie": {"history": Weights({"bridge": 1.0, "demographic": 3.0}, 1.0, True)}}, {"trained_on": "test"})
    reranker = Blend(RerankConfig(), TrainedBlend.load(trained.save(tmp_path).parent))
    assert reranker.weights("movie", "history", True, True) == Weights({"bridge": 1.0, "demographic": 3.0}, 1.0, True)
    assert not reranker.weights("movie", "profile", True, False).trained  # another mode: the configured defaults
    assert not reranker.weights("music", "history", True, True).trained
    pool = [Candidate("a", bridge=0.0, demographic=1.0), Candidate("b", bridge=1.0, demographic=0.0), Candidate("c", bridge=0.5, demographic=0.5)]
    np.testing.assert_allclose(reranker.blend(pool, reranker.weights("movie", "history", True, True).signals), [3 / 4, 1 / 4, 2 / 4])


def test_a_ranker_artifact_of_another_format_is_refused(tmp_path):
    (tmp_path / "ranker.json").write_text('{"format": 99, "scenes": {}}')
    with pytest.raises(AssetError, match="train it again"):
        TrainedBlend.load(tmp_path)
    with pytest.raises(AssetError, match="no ranker.json"):
        TrainedBlend.load(tmp_path / "missing")


def test_request_mode_separates_queries_long_and_short_histories_and_profiles():
    assert request_mode(True, 50) == "query"
    assert [request_mode(False, n) for n in (0, 1, FEW_HISTORY, FEW_HISTORY + 1)] == ["profile", "few", "few", "history"]


def random_unit(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_mmr_with_lambda_one_is_a_sort_by_score():
    scores = np.array([0.3, 0.9, 0.1, 0.9, 0.5])
    assert mmr(scores, random_unit(5), k=5, lam=1.0) == [1, 3, 4, 0, 2]  # stable on ties
    assert mmr(scores, random_unit(5), k=2, lam=1.0) == [1, 3]


def test_mmr_with_lower_lambda_prefers_a_dissimilar_item_over_a_near_duplicate():
    best = np.array([1.0, 0.0, 0.0])
    near_duplicate = np.array([0.999, 0.0447, 0.0])
    different = np.array([0.0, 0.0, 1.0])
    vectors = np.stack([best, near_duplicate, different])
    scores = np.array([1.0, 0.95, 0.8])
    assert mmr(scores, vectors, k=2, lam=1.0) == [0, 1]
    assert mmr(scores, vectors, k=2, lam=0.7) == [0, 2]
    assert mmr(scores, vectors, k=3, lam=0.7) == [0, 2, 1]


def test_mmr_never_picks_an_item_twice_and_caps_k():
    scores = np.linspace(1.0, 0.0, 6)
    order = mmr(scores, random_unit(6, seed=1), k=10, lam=0.5)
    assert sorted(order) == list(range(6))


def test_mmr_rejects_vectors_that_do_not_match_the_scores():
    scores = np.array([0.1, 0.7, 0.4])
    with pytest.raises(ValueError, match="3 scores but 0 vectors"):
        mmr(scores, np.zeros((0, 8)), k=3, lam=0.5)


def test_rank_returns_k_candidates_with_their_blended_scores_set():
    rng = np.random.default_rng(5)
    pool = [Candidate(f"i{n}", semantic=float(s), popularity=float(p)) for n, (s, p) in enumerate(rng.random((12, 2)))]
    reranker = Blend(RerankConfig(mmr_lambda=1.0))
    weights = reranker.weights("movie", "profile", True, False)
    expected = reranker.blend(pool, weights.signals)
    ranked = reranker.rank(pool, random_unit(12), k=5, weights=weights)
    assert len(ranked) == 5
    assert [c.item_id for c in ranked] == [f"i{n}" for n in np.argsort(-expected)[:5]]
    for candidate in pool:  # every candidate carries its blended score, ranked or not
        assert candidate.score == pytest.approx(expected[int(candidate.item_id[1:])])
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)


def test_rank_with_diversity_returns_k_distinct_candidates():
    pool = [Candidate(f"i{n}", semantic=1.0 - n / 10) for n in range(8)]
    reranker = Blend(RerankConfig(mmr_lambda=0.5))
    ranked = reranker.rank(pool, random_unit(8), k=4, weights=reranker.weights("movie", "profile", True, False))
    assert len({c.item_id for c in ranked}) == 4
    assert ranked[0].item_id == "i0"
    assert ranked[0].score == pytest.approx(1.0 / 1.15)  # semantic 1.0 of total weight 1 + 0.15 popularity


def test_rank_of_no_candidates_is_empty():
    assert Blend().rank([], np.zeros((0, 8)), k=5, weights=Blend().weights("movie", "history", True, True)) == []


def test_cross_encoder_reorders_only_the_head_and_keeps_it_above_the_tail():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    cross = {0: 0.0, 1: 0.2, 2: 1.0, 3: 0.5}  # the cross-encoder prefers item 2, then 3
    asked = []

    def score(head: np.ndarray) -> np.ndarray:
        asked.append(head.tolist())
        return np.array([cross[int(i)] for i in head])

    out = rescore_head(scores, score, weight=1.0, size=4)
    assert asked == [[0, 1, 2, 3]]  # only the head is scored
    assert np.argsort(-out, kind="stable").tolist() == [2, 3, 1, 0, 4, 5]
    assert out[:4].max() == pytest.approx(0.9) and out[:4].min() == pytest.approx(0.6)  # the head's own range
    np.testing.assert_array_equal(out[4:], scores[4:])
    np.testing.assert_array_equal(rescore_head(scores, score, weight=0.0, size=4), scores)
    half = rescore_head(scores, score, weight=0.5, size=4)
    assert np.argsort(-half, kind="stable")[:4].tolist() == [2, 0, 1, 3]  # 0.5*first + 0.5*cross, both min-max scaled


def test_cross_encoder_head_never_includes_unrankable_items():
    scores = np.array([0.9, -np.inf, 0.5, -np.inf])
    out = rescore_head(scores, lambda head: np.arange(len(head), dtype=float), weight=1.0, size=3)
    assert np.argsort(-out, kind="stable").tolist()[:2] == [2, 0] and np.isneginf(out[[1, 3]]).all()


def test_rank_passes_the_heads_item_ids_to_the_cross_encoder():
    pool = [Candidate(f"i{n}", semantic=1.0 - n / 10) for n in range(8)]
    seen: list[list[str]] = []

    def cross(ids):
        seen.append(list(ids))
        return np.array([float(i == "i2") for i in ids])

    config = RerankConfig(mmr_lambda=1.0, cross_weight=1.0, cross_candidates=3)
    ranked = Blend(config).rank(pool, random_unit(8), k=4, weights=Blend(config).weights("movie", "profile", True, False), cross=cross)
    assert seen == [["i0", "i1", "i2"]]
    assert [c.item_id for c in ranked] == ["i2", "i0", "i1", "i3"]


def test_trained_weights_that_say_nothing_about_the_candidates_yield_to_the_fallback():
    pool = [Candidate(f"i{n}", semantic=1.0 - n / 10) for n in range(4)]  # no demographic signal: no profile
    reranker = Blend(RerankConfig(mmr_lambda=1.0))
    flat = Weights({"demographic": 1.0}, 1.0, True)
    ranked = reranker.rank(pool, random_unit(4), k=4, weights=flat, fallback=reranker.defaults(True, False))
    assert [c.item_id for c in ranked] == ["i0", "i1", "i2", "i3"] and ranked[0].score > ranked[-1].score
