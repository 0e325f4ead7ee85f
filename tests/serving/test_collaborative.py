"""Collaborative signals: EASE (checked against a direct numpy computation), co-occurrence, popularity."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec.serving.collaborative import ItemItemModel, Popularity, _spd_inverse

# Five users, five items; item ids sort as a < b < c < d < e, the model's column order.
LIKES = {
    "u1": ["a", "b", "c"],
    "u2": ["a", "b"],
    "u3": ["b", "c", "d"],
    "u4": ["d", "e"],
    "u5": ["a", "e"],
}
ITEMS = ["a", "b", "c", "d", "e"]
L2 = 2.0


def interactions(likes: dict[str, list[str]] = LIKES) -> pd.DataFrame:
    rows = [(u, i) for u, items in likes.items() for i in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def user_item_matrix(likes: dict[str, list[str]] = LIKES) -> np.ndarray:
    x = np.zeros((len(likes), len(ITEMS)))
    for row, items in enumerate(likes.values()):
        for item in items:
            x[row, ITEMS.index(item)] = 1.0
    return x


def ease_by_hand(x: np.ndarray, l2: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_closed_form_matches_direct_numpy_computation():
    model = ItemItemModel.fit(interactions(), l2=L2)
    assert model.method == "ease"
    assert model.item_ids == ITEMS
    np.testing.assert_allclose(model.weights, ease_by_hand(user_item_matrix(), L2), atol=1e-5)
    assert np.all(np.diag(model.weights) == 0.0)


def test_ease_counts_repeated_interactions_once():
    doubled = pd.concat([interactions(), interactions()], ignore_index=True)
    np.testing.assert_array_equal(ItemItemModel.fit(doubled, l2=L2).weights, ItemItemModel.fit(interactions(), l2=L2).weights)


def test_fit_on_no_interactions_returns_none():
    assert ItemItemModel.fit(pd.DataFrame(columns=["user_id", "item_id"])) is None


def test_spd_inverse_equals_numpy_inverse():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 40))
    spd = a @ a.T + 40 * np.eye(40)
    inverse = _spd_inverse(spd)
    np.testing.assert_allclose(inverse, np.linalg.inv(spd), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(inverse, inverse.T)


def test_spd_inverse_rejects_a_matrix_that_is_not_positive_definite():
    with pytest.raises(np.linalg.LinAlgError):
        _spd_inverse(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_scores_are_the_history_rows_of_the_weights_summed():
    model = ItemItemModel.fit(interactions(), l2=L2)
    b = ease_by_hand(user_item_matrix(), L2)
    np.testing.assert_allclose(model.scores(["a", "d"]), b[0] + b[3], atol=1e-5)
    # Repeats count once, unknown ids are ignored, no known item gives zeros.
    np.testing.assert_array_equal(model.scores(["a", "d", "a", "zzz"]), model.scores(["a", "d"]))
    np.testing.assert_array_equal(model.scores(["zzz"]), np.zeros(5, np.float32))
    assert model.scores(["a"]).dtype == np.float32


def test_cooccurrence_path_gives_cosine_cooccurrence():
    model = ItemItemModel.fit(interactions(), max_dense_items=1)
    assert model.method == "cooccurrence"
    assert sp.issparse(model.weights)
    x = user_item_matrix()
    counts = x.sum(axis=0)
    cosine = (x.T @ x) / np.sqrt(np.outer(counts, counts))
    np.fill_diagonal(cosine, 0.0)
    np.testing.assert_allclose(model.weights.toarray(), cosine, atol=1e-6)
    # a and b share u1, u2 out of 3 users each: 2 / 3.
    assert model.weights[0, 1] == pytest.approx(2 / 3, abs=1e-6)
    np.testing.assert_allclose(model.scores(["a", "c"]), cosine[0] + cosine[2], atol=1e-6)


@pytest.mark.parametrize("max_dense_items", [20_000, 1], ids=["ease", "cooccurrence"])
def test_strongest_source_names_the_history_item_that_contributes_most(max_dense_items):
    model = ItemItemModel.fit(interactions(), l2=0.5, max_dense_items=max_dense_items)
    # e co-occurs with d (u4) and a (u5), never with c; of history [c, d] only d points at e.
    assert model.strongest_source(["c", "d"], "e") == "d"
    weights = model.weights.toarray() if sp.issparse(model.weights) else model.weights
    history = ["a", "c", "d"]
    expected = history[int(np.argmax([weights[ITEMS.index(h), ITEMS.index("b")] for h in history]))]
    assert model.strongest_source(history, "b") == expected
    assert model.strongest_source(["a"], "unknown-item") is None
    assert model.strongest_source(["unknown-item"], "b") is None


def test_strongest_source_is_none_when_no_history_item_pushes_the_item_up():
    # c and e never co-occur: the co-occurrence weight is 0, so there is no reason to give.
    model = ItemItemModel.fit(interactions(), max_dense_items=1)
    assert model.strongest_source(["c"], "e") is None


def test_popularity_prior_is_monotone_in_counts_and_log_scaled():
    frame = pd.DataFrame({"item_id": ["a"] * 9 + ["b"] * 3 + ["c"]})
    popularity = Popularity(frame)
    priors = [popularity.prior(i) for i in ["a", "b", "c", "never-seen"]]
    assert priors == sorted(priors, reverse=True) and len(set(priors)) == 4
    assert priors[0] == 1.0 and priors[-1] == 0.0
    assert priors[1] == pytest.approx(np.log(4) / np.log(10))


def test_popularity_add_updates_counts_and_the_maximum():
    popularity = Popularity(pd.DataFrame({"item_id": ["a", "a", "b"]}))
    before_a = popularity.prior("a")
    popularity.add("new")
    assert popularity.prior("new") == pytest.approx(np.log(2) / np.log(3))
    popularity.add("b", n=5)  # b now has 6, the new maximum
    assert popularity.counts["b"] == 6
    assert popularity.prior("b") == 1.0
    assert popularity.prior("a") < before_a


def test_popularity_of_nothing_is_zero():
    assert Popularity(pd.DataFrame({"item_id": []})).prior("a") == 0.0


# ---- real data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movielens():
    home = os.environ.get("LLMREC_HOME") or str(Path(__file__).resolve().parents[2] / ".llmrec" / "test-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMREC_HOME", home)
        from llmrec.data.datasets.movielens import load_ml100k

        yield load_ml100k()


def test_ease_on_movielens_puts_a_star_wars_sequel_among_its_top_neighbours(movielens):
    titles = dict(zip(movielens.items["item_id"], movielens.items["title"]))
    by_title = {t: i for i, t in titles.items()}
    sequels = {"Return of the Jedi", "The Empire Strikes Back"}
    assert "Star Wars" in by_title and sequels <= set(by_title)

    model = ItemItemModel.fit(movielens.interactions, l2=500.0)
    assert model.method == "ease" and len(model.item_ids) == 1682
    scores = model.scores([by_title["Star Wars"]])
    top10 = {titles[model.item_ids[i]] for i in np.argsort(-scores)[:10]}
    assert "Star Wars" not in top10  # the diagonal is zero
    assert top10 & sequels
    assert model.strongest_source([by_title["Star Wars"], by_title["Toy Story"]], by_title["Return of the Jedi"]) == by_title["Star Wars"]
