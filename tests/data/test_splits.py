"""Cold-start splits on real MovieLens 100K: no leakage, the promised sizes, deterministic."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from llmrec.data.splits import cold_item_split, cold_user_split


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    home = os.environ.get("LLMREC_HOME") or str(Path(__file__).resolve().parents[2] / ".llmrec" / "test-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMREC_HOME", home)
        from llmrec.data.datasets.movielens import load_ml100k

        frame = load_ml100k().interactions
    assert len(frame) == 100_000 and frame["item_id"].nunique() == 1682 and frame["user_id"].nunique() == 943
    return frame


@pytest.fixture(scope="module")
def item_split(interactions):
    return cold_item_split(interactions, cold_fraction=0.2, seed=42)


@pytest.fixture(scope="module")
def user_split(interactions):
    return cold_user_split(interactions, cold_fraction=0.2, seed=42)


# ---- cold items ------------------------------------------------------------------------------


def test_cold_item_split_makes_a_fifth_of_the_items_cold(item_split):
    cold = set(item_split.cold_valid_items) | set(item_split.cold_test_items)
    assert abs(len(cold) - 0.2 * 1682) <= 1
    assert abs(len(item_split.cold_valid_items) - len(item_split.cold_test_items)) <= 1


def test_no_cold_item_appears_in_train_or_warm_sets(item_split):
    cold = set(item_split.cold_valid_items) | set(item_split.cold_test_items)
    for frame in (item_split.train, item_split.warm_valid, item_split.warm_test):
        assert not cold & set(frame["item_id"])


def test_cold_valid_and_test_items_are_disjoint_and_cover_the_cold_interactions(interactions, item_split):
    valid, test = set(item_split.cold_valid_items), set(item_split.cold_test_items)
    assert not valid & test
    assert set(item_split.cold_valid["item_id"]) == valid
    assert set(item_split.cold_test["item_id"]) == test
    cold_rows = interactions[interactions["item_id"].isin(valid | test)]
    assert len(item_split.cold_valid) + len(item_split.cold_test) == len(cold_rows)
    assert item_split.cold_valid_items == sorted(valid) and item_split.cold_test_items == sorted(test)


def test_warm_interactions_are_split_80_10_10_and_nothing_is_lost(interactions, item_split):
    n_warm = len(item_split.train) + len(item_split.warm_valid) + len(item_split.warm_test)
    n_cold = len(item_split.cold_valid) + len(item_split.cold_test)
    assert n_warm + n_cold == len(interactions)
    assert len(item_split.train) == int(n_warm * 0.8)
    assert len(item_split.warm_valid) == int(n_warm * 0.1)
    assert abs(len(item_split.warm_test) - n_warm * 0.1) <= 2
    # The three warm parts are disjoint rows of the interactions.
    key = ["user_id", "item_id", "timestamp"]
    warm = pd.concat([item_split.train, item_split.warm_valid, item_split.warm_test])
    assert not warm.duplicated(key).any()
    assert len(warm.merge(interactions, on=key + ["rating"])) == n_warm


def test_cold_item_split_is_deterministic_per_seed(interactions, item_split):
    again = cold_item_split(interactions, cold_fraction=0.2, seed=42)
    for name in ("train", "warm_valid", "warm_test", "cold_valid", "cold_test"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(item_split, name))
    assert again.cold_valid_items == item_split.cold_valid_items
    other = cold_item_split(interactions, cold_fraction=0.2, seed=7)
    assert other.cold_valid_items != item_split.cold_valid_items
    assert not other.train.equals(item_split.train)


def test_cold_item_split_compares_ids_as_text_whatever_their_dtype():
    frame = pd.DataFrame(
        {"user_id": [1, 1, 2, 2, 3, 3, 4, 4], "item_id": [10, 11, 10, 12, 13, 14, 15, 16], "timestamp": range(8), "rating": 5.0}
    )
    split = cold_item_split(frame, cold_fraction=0.5, seed=0)
    cold = {int(i) for i in split.cold_valid_items + split.cold_test_items}
    assert len(cold) == 4
    warm = set(split.train["item_id"]) | set(split.warm_valid["item_id"]) | set(split.warm_test["item_id"])
    assert not cold & warm
    assert warm | cold == set(frame["item_id"])
    assert set(split.cold_valid["item_id"]) | set(split.cold_test["item_id"]) == cold


# ---- cold users ------------------------------------------------------------------------------


def test_cold_user_split_holds_out_a_fifth_of_the_users_whole(interactions, user_split):
    cold = set(user_split.cold_users)
    assert abs(len(cold) - 0.2 * 943) <= 1
    assert not cold & set(user_split.train["user_id"])
    assert set(user_split.cold["user_id"]) == cold
    assert len(user_split.train) + len(user_split.cold) == len(interactions)
    assert user_split.cold_users == sorted(cold)


def test_cold_user_interactions_come_in_time_order_per_user(user_split):
    cold = user_split.cold
    assert cold["user_id"].is_monotonic_increasing  # grouped, users one after the other
    assert cold.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()


def test_cold_user_split_is_deterministic_per_seed(interactions, user_split):
    again = cold_user_split(interactions, cold_fraction=0.2, seed=42)
    pd.testing.assert_frame_equal(again.train, user_split.train)
    pd.testing.assert_frame_equal(again.cold, user_split.cold)
    assert again.cold_users == user_split.cold_users
    assert cold_user_split(interactions, cold_fraction=0.2, seed=7).cold_users != user_split.cold_users


def test_cold_user_split_compares_ids_as_text_whatever_their_dtype():
    frame = pd.DataFrame({"user_id": [1, 1, 2, 3, 4, 5], "item_id": ["a", "b", "a", "c", "d", "e"], "timestamp": range(6), "rating": 5.0})
    split = cold_user_split(frame, cold_fraction=0.4, seed=0)
    cold = {int(u) for u in split.cold_users}
    assert len(cold) == 2
    assert not cold & set(split.train["user_id"])
    assert set(split.cold["user_id"]) == cold
