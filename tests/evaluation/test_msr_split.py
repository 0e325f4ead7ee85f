"""MSR's stratified split: exact rows on hand-made tables, per-item sizes and a partition on MovieLens 100K."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.data.splits import stratified_split


def _table(items: list[str]) -> pd.DataFrame:
    n = len(items)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "item_id": items,
            "rating": np.full(n, 4.0),
            "timestamp": np.arange(n, dtype="int64"),
        }
    )


def _split_sizes(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, tuple[int, int]]:
    sizes = pd.concat([train.assign(part=0), test.assign(part=1)]).groupby(["item_id", "part"]).size()
    return {item: (int(sizes.get((item, 0), 0)), int(sizes.get((item, 1), 0))) for item in sizes.index.levels[0]}


def test_the_smallest_draws_of_each_item_go_to_train():
    # One draw per row in row order from np.random.seed(42): 0.37454, 0.95071, 0.73199, 0.59866.
    # Sorted: rows 0, 3, 2, 1; round(0.75 * 4) = 3 go to train, row 1 (the largest draw) to test.
    frame = _table(["a", "a", "a", "a"])
    train, test = stratified_split(frame, ratio=0.75, seed=42)
    assert train.index.tolist() == [0, 3, 2]
    assert test.index.tolist() == [1]


def test_draws_are_made_after_the_min_rating_filter():
    # Item b (input row 0, one row) is dropped first, so the a-rows 1, 2, 3, 4 get the same four draws
    # as above: 0.37454, 0.95071, 0.73199, 0.59866 -> train rows 1, 4, 3 (by draw), test row 2.
    # Drawing before the filter would give them 0.95071, 0.73199, 0.59866, 0.15602 and test row 1.
    frame = _table(["b", "a", "a", "a", "a"])
    train, test = stratified_split(frame, ratio=0.75, min_rating=2, seed=42)
    assert train.index.tolist() == [1, 4, 3]
    assert test.index.tolist() == [2]
    assert "b" not in set(train["item_id"]) | set(test["item_id"])


def test_split_point_is_ratio_times_count_rounded_half_to_even():
    # round(0.75 n): n=1 -> 0.75 -> 1; n=2 -> 1.5 -> 2; n=4 -> 3; n=6 -> 4.5 -> 4; n=10 -> 7.5 -> 8
    counts = {"one": 1, "two": 2, "four": 4, "six": 6, "ten": 10}
    frame = _table([item for item, n in counts.items() for _ in range(n)])
    train, test = stratified_split(frame, ratio=0.75, seed=0)
    assert _split_sizes(train, test) == {"one": (1, 0), "two": (2, 0), "four": (3, 1), "six": (4, 2), "ten": (8, 2)}
    # ratio 0.5: n=1 -> 0.5 -> 0; n=2 -> 1; n=4 -> 2; n=6 -> 3; n=10 -> 5
    train, test = stratified_split(frame, ratio=0.5, seed=0)
    assert _split_sizes(train, test) == {"one": (0, 1), "two": (1, 1), "four": (2, 2), "six": (3, 3), "ten": (5, 5)}


def test_min_rating_drops_items_with_fewer_rows():
    frame = _table(["rare"] * 2 + ["common"] * 3 + ["popular"] * 8)
    train, test = stratified_split(frame, min_rating=3)
    kept = set(train["item_id"]) | set(test["item_id"])
    assert kept == {"common", "popular"}
    assert len(train) + len(test) == 11


def test_filter_by_user_stratifies_by_user():
    frame = pd.DataFrame(
        {
            "user_id": ["x"] * 4 + ["y"] * 8,
            "item_id": [f"i{i}" for i in range(12)],  # every item once: per item there would be no test row
            "rating": 3.0,
            "timestamp": np.arange(12, dtype="int64"),
        }
    )
    train, test = stratified_split(frame, filter_by="user")
    assert train["user_id"].value_counts().to_dict() == {"x": 3, "y": 6}
    assert test["user_id"].value_counts().to_dict() == {"x": 1, "y": 2}


def test_same_seed_same_split_and_the_global_random_state_is_untouched():
    frame = _table([f"i{i % 5}" for i in range(60)])
    state = np.random.get_state()[1].copy()
    first, second = stratified_split(frame, seed=7), stratified_split(frame, seed=7)
    assert np.array_equal(np.random.get_state()[1], state)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    other = stratified_split(frame, seed=8)
    assert set(other[1].index) != set(first[1].index)


def test_invalid_arguments_are_rejected():
    frame = _table(["a", "a"])
    for kwargs in ({"ratio": 1.0}, {"ratio": 0.0}, {"ratio": 1}, {"filter_by": "time"}, {"min_rating": 0}):
        with pytest.raises(ValueError):
            stratified_split(frame, **kwargs)


# ---- MovieLens 100K ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml100k() -> pd.DataFrame:
    from llmrec.data.datasets.movielens import load_ml100k

    return load_ml100k().interactions


@pytest.fixture(scope="module")
def ml100k_split(ml100k):
    return stratified_split(ml100k, ratio=0.75, filter_by="item", seed=42)


def test_ml100k_each_item_puts_its_msr_split_point_in_train(ml100k, ml100k_split):
    train, test = ml100k_split
    count = ml100k.groupby("item_id").size()
    in_train = train.groupby("item_id").size().reindex(count.index, fill_value=0)
    in_test = test.groupby("item_id").size().reindex(count.index, fill_value=0)
    expected = np.round(0.75 * count).astype(int)  # half to even, as MSR's round on a Series
    assert (in_train == expected).all()
    assert (in_train + in_test == count).all()
    # about 75% overall: 75,066 of 100,000 (items rated once or twice keep every rating in train)
    assert len(train) == int(expected.sum()) and abs(len(train) / len(ml100k) - 0.75) < 0.002


def test_ml100k_train_and_test_partition_the_ratings(ml100k, ml100k_split):
    train, test = ml100k_split
    assert len(train) + len(test) == len(ml100k)
    assert not set(train.index) & set(test.index)
    assert set(train.index) | set(test.index) == set(ml100k.index)
    pd.testing.assert_frame_equal(pd.concat([train, test]).sort_index(), ml100k)
