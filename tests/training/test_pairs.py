"""Training data, objectives and artifacts without Ray: pairs from the cold-item split, hard
negatives, the contrastive loss, atomic model and index directories."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.data.catalog import Catalog
from llmrec.index.versions import CURRENT, current_version, publish_version
from llmrec.training.export import replace_dir
from llmrec.training.losses import contrastive_loss
from llmrec.training.pairs import (
    CatalogText,
    cold_validation_set,
    encoder_pairs,
    mine_hard_negatives,
    reranker_pairs,
    seen_items,
)


@pytest.fixture(scope="module")
def small():
    """Six movies, three users with ratings in time order."""
    titles = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"]
    items = pd.DataFrame({"item_id": [f"{t} (1999)" for t in titles], "scene": "movie", "title": titles, "text": "", "attributes": '{"genres": ["Drama"], "year": 1999}', "created_at": 0})
    rows = [("u1", "Alpha (1999)", 5, 1), ("u1", "Bravo (1999)", 4, 2), ("u1", "Charlie (1999)", 5, 3), ("u1", "Delta (1999)", 1, 4),
            ("u2", "Bravo (1999)", 5, 1), ("u2", "Echo (1999)", 5, 2), ("u3", "Alpha (1999)", 2, 1)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "attributes": ['{"age": "25-34", "zip_code": "12345"}', "{}", "{}"]})
    catalog = Catalog("small", pd.DataFrame({"scene": ["movie"], "name": ["Movies"], "description": ["films"]}), items, users, inter)
    return catalog, CatalogText.of(catalog)


def test_user_text_is_built_only_from_likes_before_the_target_and_leaves_out_identifiers(small):
    catalog, text = small
    pairs = encoder_pairs(text, catalog.interactions, pairs_per_user=10)
    by_target = {(u, i): t for u, i, t in zip(pairs["user_id"], pairs["item_id"], pairs["user_text"])}
    assert set(by_target) == {("u1", "Bravo (1999)"), ("u1", "Charlie (1999)"), ("u2", "Echo (1999)")}  # disliked Delta is never a target
    assert by_target[("u1", "Charlie (1999)")] == "Liked: Alpha; Bravo. About me: age 25-34."
    assert "Charlie" not in by_target[("u1", "Charlie (1999)")] and "12345" not in by_target[("u1", "Bravo (1999)")]
    assert pairs.set_index("item_id").loc["Echo (1999)", "item_text"] == "Movie: Echo. Year: 1999. Genres: Drama."


def test_hard_negatives_are_near_the_positive_but_never_seen_by_the_user(small):
    catalog, text = small
    pairs = encoder_pairs(text, catalog.interactions, pairs_per_user=10)
    ids = list(text.texts)
    vectors = np.eye(len(ids), dtype=np.float32) + 0.01
    vectors[ids.index("Foxtrot (1999)")] = vectors[ids.index("Charlie (1999)")] + 0.1  # Foxtrot is Charlie's nearest
    negatives = mine_hard_negatives(pairs, ids, vectors, seen_items(catalog.interactions), skip=1)
    seen = seen_items(catalog.interactions)
    for user, item, negative in zip(pairs["user_id"], pairs["item_id"], negatives):
        assert negative != item and negative not in seen[user]
    assert negatives[pairs.index[pairs["item_id"] == "Charlie (1999)"][0]] == "Foxtrot (1999)"


def test_reranker_pairs_are_half_positive_with_random_and_hard_negatives_the_user_never_saw(small):
    catalog, text = small
    pairs = encoder_pairs(text, catalog.interactions, pairs_per_user=10)
    pairs["negative_id"] = "Foxtrot (1999)"  # the mined hard negative of every pair
    seen = seen_items(catalog.interactions)
    by_text = {t: i for i, t in text.texts.items()}
    negatives = {"random": [], "hard": []}
    for random_fraction, kind in ((1.0, "random"), (0.0, "hard")):
        table = reranker_pairs(text, pairs, list(text.texts), seen, random_fraction)
        assert len(table) == 2 * len(pairs) and table["label"].mean() == 0.5
        assert set(table.loc[table["label"] == 1.0, "text_b"]) == set(pairs["item_text"])
        for user_text, item_text in zip(table["text_a"], table["text_b"].where(table["label"] == 0.0)):
            if isinstance(item_text, str):
                user = pairs.loc[pairs["user_text"] == user_text, "user_id"].iloc[0]
                assert by_text[item_text] not in seen[user]
                negatives[kind].append(by_text[item_text])
    assert set(negatives["hard"]) == {"Foxtrot (1999)"}
    assert set(negatives["random"]) - {"Foxtrot (1999)"}  # random ones reach the other unseen items too


def test_validation_users_are_described_by_training_interactions_only(small):
    _, text = small
    train = pd.DataFrame([("u1", "Alpha (1999)", 5, 1)], columns=["user_id", "item_id", "rating", "timestamp"])
    cold = pd.DataFrame([("u1", "Foxtrot (1999)", 5, 9), ("u2", "Foxtrot (1999)", 1, 9)], columns=["user_id", "item_id", "rating", "timestamp"])
    validation = cold_validation_set(text, train, cold, ["Foxtrot (1999)", "Echo (1999)"])
    assert validation.user_ids == ["u1"] and validation.relevant == [["Foxtrot (1999)"]]
    assert validation.user_texts == ["Liked: Alpha. About me: age 25-34."]
    assert validation.item_ids == ["Echo (1999)", "Foxtrot (1999)"]


def test_contrastive_loss_rewards_each_user_matching_its_own_positive_over_in_batch_and_hard_negatives():
    users = torch.nn.functional.normalize(torch.eye(4)[:, :3] + 0.05, dim=-1)[:3]
    aligned = contrastive_loss(users, users.clone(), -users.clone())
    shuffled = contrastive_loss(users, users.roll(1, dims=0), users.clone())
    assert aligned < 0.01 < shuffled
    assert torch.isclose(contrastive_loss(users, users), contrastive_loss(users, users, None))


def test_replacing_a_model_directory_swaps_it_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".model.tmp"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_dir(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


class _Index:  # the two methods publish_version needs from a VectorIndex
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def save(self, directory, metadata):
        directory.mkdir(parents=True)
        (directory / "meta.json").write_text(str({"count": self.n, **metadata}))


def test_publishing_an_index_version_switches_readers_atomically_and_keeps_the_previous_build(tmp_path):
    root = tmp_path / "indexes"
    (root / "movie").mkdir(parents=True)  # a build from before versioning, a plain directory
    (root / "movie" / "meta.json").write_text("legacy")
    first = publish_version(root, {"movie": _Index(1)}, {"movie": {"v": 1}}, {})
    with open(root / "movie" / "meta.json") as held:  # a reader that opened the first build
        second = publish_version(root, {"movie": _Index(2)}, {"movie": {"v": 2}}, {})
        third = publish_version(root, {"movie": _Index(3)}, {"movie": {"v": 3}}, {}, keep=2)
        assert current_version(root) == third.name and os.readlink(root / "movie") == f"{CURRENT}/movie"
        assert "'count': 3" in (root / "movie" / "meta.json").read_text()
        assert held.read() == "{'count': 1, 'v': 1}"  # an open build is never rewritten
    assert second.is_dir() and not first.exists()  # pruned to the newest two
