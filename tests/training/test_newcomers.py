"""The newcomer model: trained on real MovieLens 1M users in time order (the cold-user protocol's
training users), it ranks users it never saw from their profile and first clicks, and is served as
the blend's `newcomer` signal."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import AssetError
from llmrec.evaluation.baselines import DemographicPopularity
from llmrec.evaluation.protocols import ml1m_cold_users
from llmrec.evaluation.tasks import evaluate, metric_specs, top_k
from llmrec.serving.blend import TrainedBlend, Weights, model_file
from llmrec.serving.newcomers import CLICKS
from llmrec.serving.schemas import RecommendRequest
from llmrec.training.context import catalog_profiles
from llmrec.training.newcomers import STEPS, fit_newcomer_model, sequences_in_time_order, train_newcomers


@pytest.fixture(scope="module")
def protocol(movielens_1m):
    return ml1m_cold_users(max_users=800, catalog=movielens_1m)


@pytest.fixture(scope="module")
def model(protocol):
    return fit_newcomer_model(protocol.train.frame, catalog_profiles(protocol.catalog))


def _newcomer_scores(model, queries, ids):
    history = queries.history.tocsr()
    return np.stack([model.logits(queries.profiles[r], [ids[j] for j in history[r].indices], ids) for r in range(history.shape[0])])


def test_newcomer_model_ranks_unseen_users_later_choices_above_popularity_among_their_peers(protocol, model):
    """800 held-out users at each step (profile alone, first 1, 3, 5 clicks): NDCG@20 summed over the steps."""
    ids = list(protocol.items.ids)
    demographic = DemographicPopularity().fit(protocol.train)
    spec = metric_specs(["ndcg@20"])
    learned = [evaluate(q, top_k(_newcomer_scores(model, q, ids), q, 20), spec)["ndcg@20"] for q in protocol.test]
    peers = [evaluate(q, top_k(demographic.score(q), q, 20), spec)["ndcg@20"] for q in protocol.test]
    assert sum(learned) > sum(peers) + 0.01, (learned, peers)


def test_the_served_numpy_model_scores_held_out_users_as_training_measured_them(protocol):
    """Training chooses its epoch by NDCG@20 in torch; serving reads the exported arrays in numpy: the
    same NDCG on the same held-out users, so the arrays served are the chosen epoch's."""
    frame, profiles = protocol.train.frame, catalog_profiles(protocol.catalog)
    held = sorted(frame["user_id"].unique())[:150]
    fitted = fit_newcomer_model(frame, profiles, held_out=held)
    names, sequences = fitted.items.names, sequences_in_time_order(frame)
    values = []
    for user in held:
        sequence = sequences[user]
        if len(sequence) <= CLICKS:
            continue
        later = set(sequence[CLICKS:])
        for n in STEPS:
            scores = fitted.logits(profiles.get(user, {}), sequence[:n], names)
            scores[[fitted.items.row[i] - 1 for i in sequence[:n]]] = -np.inf
            top = np.argsort(-scores, kind="stable")[:20]
            dcg = sum(1.0 / np.log2(rank + 2) for rank, column in enumerate(top) if names[column] in later)
            values.append(dcg / sum(1.0 / np.log2(rank + 2) for rank in range(min(len(later), 20))))
    assert np.mean(values) == pytest.approx(fitted.card["held_out_ndcg@20"], abs=1e-4)
    assert fitted.card["held_out_ndcg@20_by_epoch"][fitted.card["epochs"] - 1] == fitted.card["held_out_ndcg@20"]
    with pytest.raises(ValueError, match="no held-out user"):
        fit_newcomer_model(frame, profiles, held_out=["a user it never saw"])


def test_clicks_and_profile_change_the_answer_and_unknown_inputs_add_nothing(model):
    items = model.items.names[:300]
    alone = model.logits({"gender": "female", "age": "25-34"}, [], items)
    clicked = model.logits({"gender": "female", "age": "25-34"}, items[:3], items)
    assert np.abs(alone - clicked).max() > 0.1
    assert np.abs(alone - model.logits({"gender": "male", "age": "25-34"}, [], items)).max() > 0.01
    assert np.array_equal(model.logits({"gender": "female", "age": "25-34", "planet": "Mars"}, ["no-such-item"], items), alone)
    with_new = model.logits({}, [], [*items[:5], "an item it never saw"])
    assert with_new[-1] == with_new[:-1].min()
    repeated = model.logits({}, [items[0], items[1], items[1], items[1], "no-such-item"], items)
    assert np.allclose(repeated, model.logits({}, [items[1], items[0]], items))  # each clicked item counts once


def test_newcomer_models_survive_save_and_load_and_a_broken_file_says_to_retrain(model, tmp_path):
    TrainedBlend({}, {}, {}, {"movie": model}).save(tmp_path)
    loaded = TrainedBlend.load(tmp_path).newcomers["movie"]
    items = model.items.names[:50]
    assert np.array_equal(loaded.logits({"gender": "male"}, items[:2], items), model.logits({"gender": "male"}, items[:2], items))
    TrainedBlend({}).save(tmp_path)
    assert TrainedBlend.load(tmp_path).newcomers == {} and not list(tmp_path.glob("newcomer-*"))
    TrainedBlend({}, {}, {}, {"movie": model}).save(tmp_path)
    stored = tmp_path / model_file("newcomers", "movie")
    stored.write_bytes(stored.read_bytes()[:1000])
    with pytest.raises(AssetError, match="train it again with `llmrec train ranker --newcomers`"):
        TrainedBlend.load(tmp_path)


def test_a_newcomer_request_is_ranked_by_the_served_newcomer_signal(demo, demo_catalog, monkeypatch):
    """The demo's movie scene (MovieLens 1M ratings): a profile and two clicks, ranked by the newcomer weight alone."""
    newcomers = train_newcomers(demo_catalog.interactions.sample(n=300_000, random_state=5), demo_catalog)["movie"]
    trained = TrainedBlend({"movie": {"few": Weights({"newcomer": 1.0}, 1.0, True)}}, {}, {}, {"movie": newcomers})
    monkeypatch.setattr(demo.ranker.blend, "trained", trained)
    clicks = newcomers.items.names[10:12]
    profile = {"gender": "female", "age": "18-24"}
    answer = demo.recommend(RecommendRequest(history=clicks, profile=profile, scene="movie", k=10)).items
    logits = newcomers.logits(profile, clicks, [i.item_id for i in answer])
    assert len(answer) == 10 and list(logits) == sorted(logits, reverse=True)
    other = demo.recommend(RecommendRequest(history=clicks, profile={"gender": "male", "age": "56+"}, scene="movie", k=10)).items
    assert [i.item_id for i in other] != [i.item_id for i in answer]
