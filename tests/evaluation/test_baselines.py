"""Baselines and the llmrec blend on tiny hand-made data (no model download, a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec.evaluation.baselines import (
    BPR,
    EASE,
    DemographicPopularity,
    Embedder,
    EncoderRanker,
    ItemKNN,
    Popularity,
    Random,
    TfIdf,
    keep_top,
)
from llmrec.evaluation.hybrid import Hybrid, _zscore, coordinate_ascent
from llmrec.evaluation.tasks import Items, Queries, TrainData, metric_specs, top_k

# Two tastes: items 0-2 are comedies, 3-5 dramas; users 0-3 watch comedies, users 4-7 dramas,
# and item 0 (and 3) are the most watched of their kind.
TRAIN = np.array(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 0, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 1, 0, 1],
        [0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 1, 0],
    ],
    dtype=np.float32,
)
GENRES = ["Comedy"] * 3 + ["Drama"] * 3


def _data() -> TrainData:
    items = Items(
        np.array([f"i{j}" for j in range(6)], dtype=object),
        [f"Movie: Film {j}. Genres: {g}." for j, g in enumerate(GENRES)],
        [[f"genres={g}"] for g in GENRES],
    )
    return TrainData(items, sp.csr_matrix(TRAIN), [{"gender": "female" if u < 4 else "male"} for u in range(8)])


def _queries(history: list[list[int]], relevant: list[set[int]], profiles=None) -> Queries:
    rows = [r for r, cols in enumerate(history) for _ in cols]
    cols = [c for cols in history for c in cols]
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(history), 6))
    return Queries("q", [f"q{r}" for r in range(len(history))], matrix, profiles or [{}] * len(history), relevant)


class FixedEmbedder(Embedder):
    """Genre directions as 'embeddings': comedies along x, dramas along y; profiles by gender."""

    def texts(self, texts: list[str]) -> np.ndarray:
        vectors = [[1.0, 0.1] if "Comedy" in t or "female" in t else [0.1, 1.0] for t in texts]
        vectors = np.array(vectors, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_popularity_ranks_by_training_count_and_random_is_seeded():
    data = _data()
    queries = _queries([[]], [{0}])
    assert top_k(Popularity().fit(data).score(queries), queries, 2) == [[0, 3]]
    assert np.array_equal(Random().fit(data).score(queries), Random().fit(data).score(queries))


def test_demographic_popularity_ranks_what_users_sharing_the_profile_chose():
    data = _data()
    queries = _queries([[], []], [{0}, {3}], profiles=[{"gender": "female"}, {"gender": "male"}])
    ranked = top_k(DemographicPopularity().fit(data).score(queries), queries, 2)
    assert ranked[0][0] == 0 and ranked[1][0] == 3  # comedies for the women who watched them, dramas for the men
    unknown = _queries([[]], [{0}], profiles=[{"gender": "other"}])
    assert not DemographicPopularity().fit(data).score(unknown).any()  # a value nobody shares says nothing


def test_ease_matches_its_closed_form():
    data = _data()
    model = EASE(l2=2.0).fit(data)
    gram = TRAIN.T @ TRAIN + 2.0 * np.eye(6)
    inverse = np.linalg.inv(gram)
    expected = -inverse / np.diag(inverse)
    np.fill_diagonal(expected, 0.0)
    assert model.weights == pytest.approx(expected.astype(np.float32), abs=1e-5)


def test_ease_leaves_items_without_interactions_at_zero():
    data = _data()
    data.matrix = sp.csr_matrix(np.hstack([TRAIN[:, :5], np.zeros((8, 1), np.float32)]))
    model = EASE(l2=2.0).fit(data)
    assert not model.weights[:, 5].any() and not model.weights[5].any()


def test_collaborative_baselines_recommend_the_users_own_taste():
    data = _data()
    queries = _queries([[1], [4]], [{0, 2}, {3, 5}])
    for model in (ItemKNN(neighbours=3), EASE(l2=1.0), BPR(dim=8, epochs=60, reg=1e-4)):
        ranked = top_k(model.fit(data).score(queries), queries, 1)
        assert ranked[0][0] in {0, 2} and ranked[1][0] in {3, 5}, model.name


def test_keep_top_keeps_the_n_largest_of_each_column():
    similarity = np.array([[0.0, 0.9, 0.1], [0.5, 0.0, 0.8], [0.4, 0.2, 0.0]], dtype=np.float32)
    assert keep_top(similarity, 1).tolist() == [[0.0, pytest.approx(0.9), 0.0], [pytest.approx(0.5), 0.0, pytest.approx(0.8)], [0.0, 0.0, 0.0]]


def test_content_models_follow_the_genre_of_the_history_and_of_the_profile():
    data = _data()
    queries = _queries([[1], []], [{0}, {3}], profiles=[{}, {"gender": "male"}])
    ranked = top_k(EncoderRanker("zero-shot", FixedEmbedder("fixed")).fit(data).score(queries), queries, 2)
    assert set(ranked[0]) == {0, 2} and set(ranked[1]) <= {3, 4, 5}
    ranked = top_k(TfIdf().fit(data).score(queries), queries, 2)
    assert set(ranked[0]) == {0, 2}


def test_zscore_is_computed_over_the_candidates_only():
    scores = np.array([[1.0, 3.0, 100.0]], dtype=np.float32)
    z = _zscore(scores, np.array([True, True, False]))
    assert z[0, :2].tolist() == [-1.0, 1.0]


def test_coordinate_ascent_is_never_worse_than_the_best_single_signal():
    queries = _queries([[], []], [{0}, {1}])
    good = np.array([[3, 2, 1, 0, 0, 0], [2, 3, 1, 0, 0, 0]], dtype=np.float32)
    noise = np.array([[0, 5, 1, 0, 0, 0], [5, 0, 1, 0, 0, 0]], dtype=np.float32)
    weights, value = coordinate_ascent({"good": good, "noise": noise}, queries, metric_specs(["ndcg@1"])[0])
    assert value == 1.0 and weights.get("good") == 1.0


def test_hybrid_bridges_collaborative_signal_to_an_item_without_interactions():
    data = _data()
    data.matrix = sp.csr_matrix(np.hstack([TRAIN[:, :5], np.zeros((8, 1), np.float32)]))  # item 5 is cold
    model = Hybrid("llmrec-zero-shot", FixedEmbedder("fixed"), neighbours=2, l2=1.0)
    model.fit(data)
    queries = _queries([[3, 4], [0, 1]], [{5}, {2}])
    bridge = model.signals(queries, {"bridge"})["bridge"]
    assert bridge[0, 5] > bridge[1, 5]  # the drama fan gets the cold drama
    assert model.popularity[5] > 0  # predicted from content, not left at zero
