"""The context model: trained on the demo's real MovieLens ratings with age groups as contexts, and
served as the `like_probability` signal of a request that names its context."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.errors import AssetError
from llmrec.evaluation import metrics
from llmrec.serving.blend import TrainedBlend, Weights, model_file
from llmrec.serving.context import category_values
from llmrec.serving.schemas import RecommendRequest
from llmrec.training.context import catalog_categories, catalog_profiles, fit_context_model
from llmrec.training.ranker import train_contexts


@pytest.fixture(scope="module")
def rated(demo_catalog):
    """300,000 of the demo's movie ratings to train on and 30,000 others to judge by, each with its user's age as context."""
    rows = demo_catalog.interactions.sample(n=330_000, random_state=3)
    return rows.iloc[:300_000], rows.iloc[300_000:]


@pytest.fixture(scope="module")
def model(demo_catalog, rated):
    return train_contexts(rated[0], demo_catalog, "age", positive_rating=4.0)["movie"]


def _probabilities(model, catalog, rows, with_context=True):
    profiles, genres = catalog_profiles(catalog), catalog_categories(catalog)
    out = np.zeros(len(rows))
    for n, row in enumerate(rows.itertuples(index=False)):
        context = profiles[row.user_id]["age"] if with_context else None
        out[n] = model.probabilities(row.user_id, profiles[row.user_id], [row.item_id], [genres[row.item_id]], context)[0]
    return out


def test_context_model_beats_the_items_like_rate_on_ratings_it_never_saw(demo_catalog, rated, model):
    train, held = rated
    labels = (held["rating"] >= 4.0).to_numpy()
    rate = (train["rating"] >= 4.0).groupby(train["item_id"]).mean()
    prior = held["item_id"].map(rate).fillna(rate.mean()).to_numpy()
    learned = _probabilities(model, demo_catalog, held)
    assert metrics.auc(labels, learned) > metrics.auc(labels, prior) + 0.02
    assert sorted(model.contexts.names) == sorted({json.loads(a)["age"] for a in demo_catalog.users["attributes"]})
    assert model.card["validation_auc"] > 0.7 and model.card["context_attribute"] == "age"


def test_each_context_ranks_with_its_own_parts_and_unknown_ones_with_the_shared_parts(model):
    items = model.items.names[:200]
    genres = [[] for _ in items]
    young = model.probabilities("1", {}, items, genres, "under 18")
    old = model.probabilities("1", {}, items, genres, "56+")
    assert np.abs(young - old).max() > 0.01  # the contexts learned parts of their own
    shared = model.probabilities("1", {}, items, genres, None)
    assert np.array_equal(model.probabilities("1", {}, items, genres, "a surface it never saw"), shared)


def test_a_new_item_is_scored_through_its_categories_and_a_new_user_through_their_profile(model):
    horror = model.probabilities("1", {}, ["new-a", "new-b"], [["genres=Horror"], ["genres=Horror"]], "25-34")
    assert horror[0] == horror[1]  # nothing of their own: two new items with the same genres score the same
    children = model.probabilities("1", {}, ["new-c"], [["genres=Children's"]], "25-34")
    assert children[0] != horror[0]
    stranger = model.probabilities("someone new", {"gender": "female"}, ["new-a"], [["genres=Romance"]], None)
    other = model.probabilities("someone new", {"gender": "male"}, ["new-a"], [["genres=Romance"]], None)
    assert stranger[0] != other[0]


def test_context_models_survive_save_and_load_beside_the_blend(model, tmp_path):
    TrainedBlend({"movie": {"history": Weights({"like_probability": 1.0}, 1.0, True)}}, {}, {"movie": model}).save(tmp_path)
    loaded = TrainedBlend.load(tmp_path).contexts["movie"]
    items = model.items.names[:50]
    genres = [["genres=Drama"]] * len(items)
    assert np.array_equal(loaded.probabilities("7", {"gender": "male"}, items, genres, "35-44"), model.probabilities("7", {"gender": "male"}, items, genres, "35-44"))


def test_a_broken_context_model_file_is_an_asset_error_that_says_to_retrain(model, tmp_path):
    TrainedBlend({}, {}, {"movie": model}).save(tmp_path)
    stored = tmp_path / model_file("contexts", "movie")
    stored.write_bytes(stored.read_bytes()[:1000])
    with pytest.raises(AssetError, match="train it again"):
        TrainedBlend.load(tmp_path)


def test_retraining_without_a_context_model_serves_none_and_leaves_no_stale_file(model, tmp_path):
    TrainedBlend({}, {}, {"movie": model, "a scene/with odd ../ characters": model}).save(tmp_path)
    assert set(TrainedBlend.load(tmp_path).contexts) == {"movie", "a scene/with odd ../ characters"}
    TrainedBlend({"movie": {"history": Weights({"semantic": 1.0}, 1.0, True)}}).save(tmp_path)
    assert TrainedBlend.load(tmp_path).contexts == {}
    assert not list(tmp_path.glob("context-*"))


def test_a_request_in_a_context_is_ranked_by_its_like_probabilities_and_says_so(demo, demo_catalog, model, monkeypatch):
    trained = TrainedBlend({"movie": {"history": Weights({"like_probability": 1.0}, 1.0, True)}}, {}, {"movie": model})
    monkeypatch.setattr(demo.ranker.blend, "trained", trained)
    young = demo.recommend(RecommendRequest(user_id="1", scene="movie", context="under 18", k=10)).items
    probabilities = [item.like_probability for item in young]
    assert probabilities == sorted(probabilities, reverse=True)
    profile = catalog_profiles(demo_catalog)["1"]
    expected = model.probabilities("1", profile, [i.item_id for i in young], [category_values(i.attributes) for i in young], "under 18")
    assert np.allclose(probabilities, expected, atol=1e-6)
    assert all(("liked in under 18" in " ".join(i.reasons)) == (i.like_probability >= 0.5) for i in young)
    old = demo.recommend(RecommendRequest(user_id="1", scene="movie", context="56+", k=10)).items
    assert [i.item_id for i in old] != [i.item_id for i in young]
    plain = demo.recommend(RecommendRequest(user_id="1", scene="movie", k=10)).items
    assert all(i.like_probability is not None and not any("liked in" in r for r in i.reasons) for i in plain)


def test_a_scene_without_a_context_model_answers_without_like_probabilities(demo):
    answer = demo.recommend(RecommendRequest(user_id="1", scene="movie", context="under 18", k=5))
    assert answer.items and all(item.like_probability is None for item in answer.items)


def test_the_served_numpy_model_scores_held_out_rows_as_training_measured_them(demo_catalog, rated):
    """Training judges each epoch in torch; serving reads the exported arrays in numpy: the same AUC."""
    train, held = (f.assign(label=(f["rating"] >= 4.0).astype(np.int8), context=None) for f in (rated[0].iloc[:50_000], rated[1]))
    fitted = fit_context_model(train, held, catalog_profiles(demo_catalog), catalog_categories(demo_catalog))
    served = _probabilities(fitted, demo_catalog, held, with_context=False)
    assert metrics.auc(held["label"].to_numpy(), served) == pytest.approx(fitted.card["validation_auc"], abs=1e-4)
    assert fitted.card["validation_auc_by_epoch"][fitted.card["epochs"] - 1] == fitted.card["validation_auc"]
