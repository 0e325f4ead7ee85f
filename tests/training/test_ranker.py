"""`llmrec train ranker`: blend weights learned from the served Ranker's own candidates, on the demo catalog."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.config import load_config
from llmrec.data.catalog import Catalog
from llmrec.serving.blend import SIGNALS, TrainedBlend, Weights, blend_table, mmr
from llmrec.serving.recommender import Recommender
from llmrec.training.ranker import _Tables, collect, fit_blend, fit_weights, holdout, train_ranker, training_requests


@pytest.fixture(scope="module")
def held_out(demo_catalog):
    kept, targets = holdout(demo_catalog.interactions, users=40)
    return kept, targets


@pytest.fixture(scope="module")
def fresh(demo_catalog, held_out, encoder, tmp_path_factory):
    """A Recommender on the demo catalog without the held-out interactions, with its own state."""
    kept, _ = held_out
    config = load_config("local", [f"store.url=sqlite:///{tmp_path_factory.mktemp('ranker') / 'state.db'}"])
    catalog = Catalog(demo_catalog.name, demo_catalog.scenes, demo_catalog.items, demo_catalog.users, kept, demo_catalog.kg)
    return Recommender(config, catalog, encoder=encoder)


def test_holdout_moves_each_chosen_users_last_interactions_to_the_targets(demo_catalog, held_out):
    kept, targets = held_out
    assert len(kept) + len(targets) == len(demo_catalog.interactions)
    assert targets["user_id"].nunique() == 40
    for user, group in targets.groupby("user_id"):
        earlier = kept[kept["user_id"] == user]
        assert len(group) >= 0.2 * (len(group) + len(earlier)) - 1
        assert earlier["timestamp"].max() <= group["timestamp"].min()  # the targets come last


def test_fitted_weights_never_lose_to_the_best_single_signal_and_serve_in_the_fitted_order(demo_catalog, held_out, fresh):
    kept, targets = held_out
    profiles = {u: json.loads(a) for u, a in zip(demo_catalog.users["user_id"], demo_catalog.users["attributes"])}
    scene_of = dict(zip(demo_catalog.items["item_id"], demo_catalog.items["scene"]))
    requests, wanted, _ = training_requests(kept, targets, profiles, scene_of)
    examples = collect(fresh, requests, wanted)
    assert {e.mode for e in examples} == {"history", "few", "profile"}
    history = [e for e in examples if e.mode == "history"]
    assert any(e.relevant.any() for e in history)  # the held-out items are among the candidates

    weights, value = fit_weights(history, k=10)
    tables = _Tables(history, 10)
    assert value >= max(tables.ndcg({s: 1.0}) for s in SIGNALS) - 1e-9
    assert value == pytest.approx(tables.ndcg(weights))

    trained = fit_blend(examples, k=10)
    fresh.ranker.blend.trained = trained
    try:
        for example in history[:5]:
            request = requests[example.request].model_copy(update={"k": 10})
            served = [item.item_id for item in fresh.recommend(request).items]
            chosen = trained.scenes[example.scene][example.mode]
            order = mmr(blend_table(example.table, chosen.signals), example.vectors, 10, chosen.mmr_lambda)
            assert served == [example.item_ids[i] for i in order], "the served order is the fitted blend's order"
    finally:
        fresh.ranker.blend.trained = None


def test_train_ranker_serves_trained_weights_only_where_they_beat_the_defaults_on_unseen_users(demo_catalog, encoder, tmp_path):
    config = load_config("local")
    out = train_ranker(config, demo_catalog, tmp_path / "ranker", users=60, k=10, context_attribute="age", newcomers=True)
    model = TrainedBlend.load(tmp_path / "ranker")
    assert set(model.contexts) == {"movie"} == set(out["context_models"])  # music and grocery have no ratings to learn from
    assert "movie" in model.newcomers and set(model.newcomers) == set(out["newcomer_models"]) == set(model.card["newcomer_models"])
    assert model.card["newcomer_models"]["movie"]["held_out_ndcg@20"] > 0.1
    assert "25-34" in model.contexts["movie"].contexts.names and model.card["context_models"]["movie"]["validation_auc"] > 0.7
    assert model.card["catalog"] == demo_catalog.name and model.card["held_out_users"] == 60
    check = out["check"]["movie"]
    assert set(check) == {"history", "few", "profile"}
    for mode, result in check.items():  # served: the trained weights where they won on the unseen half, else the defaults
        won = result["ndcg@10 trained"] is not None and result["ndcg@10 trained"] >= result["ndcg@10 default"]
        assert (mode in model.scenes.get("movie", {})) == won and (f"movie/{mode}" in out["kept_defaults"]) == (not won)
    assert set(model.card["fitted"]["movie"]) == {"history", "few", "profile"}
    assert all(np.isfinite(w) and w >= 0 for modes in model.scenes.values() for m in modes.values() for w in m.signals.values())


def test_a_retrained_blend_replaces_the_running_one_at_the_next_sync_and_a_broken_one_does_not(fresh, tmp_path):
    directory = tmp_path / "model"
    first = TrainedBlend({"movie": {"history": Weights({"semantic": 1.0}, 1.0, True)}})
    first.save(directory)
    fresh.ranker.config.rerank.model = str(directory)
    try:
        assert fresh.ranker.reload_blend()
        assert fresh.ranker.blend.weights("movie", "history", True, True).signals == {"semantic": 1.0}
        assert not fresh.ranker.reload_blend()  # unchanged file: nothing to do
        TrainedBlend({"movie": {"history": Weights({"engaged": 2.0}, 0.9, True)}}).save(directory)
        fresh.sync()
        assert fresh.ranker.blend.weights("movie", "history", True, True) == Weights({"engaged": 2.0}, 0.9, True)
        (directory / "ranker.json").write_text("{not json")
        fresh.sync()  # a bad file keeps the weights that serve
        assert fresh.ranker.blend.weights("movie", "history", True, True).signals == {"engaged": 2.0}
    finally:
        fresh.ranker.config.rerank.model = None
        fresh.ranker.blend.trained = None
