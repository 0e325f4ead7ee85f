"""Deterministic cold-start splits: the same seed gives the same split on every machine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class ColdItemSplit:
    """Cold items have no interaction in `train`; their interactions are the cold validation/test sets."""

    train: pd.DataFrame
    warm_valid: pd.DataFrame
    warm_test: pd.DataFrame
    cold_valid: pd.DataFrame
    cold_test: pd.DataFrame
    cold_valid_items: list[str]
    cold_test_items: list[str]


@dataclass
class ColdUserSplit:
    """Cold users have no interaction in `train`; `cold` holds theirs in time order."""

    train: pd.DataFrame
    cold: pd.DataFrame
    cold_users: list[str]


def _pick(ids: pd.Series, fraction: float, rng: np.random.Generator) -> np.ndarray:
    unique = np.sort(ids.unique().astype(str))
    return rng.choice(unique, size=int(round(len(unique) * fraction)), replace=False)


def cold_item_split(interactions: pd.DataFrame, cold_fraction: float = 0.2, seed: int = 42) -> ColdItemSplit:
    """`cold_fraction` of the interacted items become cold (split 50/50 into validation and test items);
    the warm interactions are split 80/10/10 at random."""
    rng = np.random.default_rng(seed)
    cold = _pick(interactions["item_id"], cold_fraction, rng)
    half = len(cold) // 2
    valid_items, test_items = sorted(cold[:half].tolist()), sorted(cold[half:].tolist())
    item_key = interactions["item_id"].astype(str)  # _pick compares ids as text
    is_cold = item_key.isin(cold)
    warm = interactions[~is_cold].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_train, n_valid = int(len(warm) * 0.8), int(len(warm) * 0.1)
    return ColdItemSplit(
        train=warm.iloc[:n_train].reset_index(drop=True),
        warm_valid=warm.iloc[n_train : n_train + n_valid].reset_index(drop=True),
        warm_test=warm.iloc[n_train + n_valid :].reset_index(drop=True),
        cold_valid=interactions[item_key.isin(valid_items)].reset_index(drop=True),
        cold_test=interactions[item_key.isin(test_items)].reset_index(drop=True),
        cold_valid_items=valid_items,
        cold_test_items=test_items,
    )


def cold_user_split(interactions: pd.DataFrame, cold_fraction: float = 0.2, seed: int = 42) -> ColdUserSplit:
    """`cold_fraction` of the users are held out whole; theirs come back sorted by (user, time)."""
    rng = np.random.default_rng(seed)
    cold = _pick(interactions["user_id"], cold_fraction, rng)
    is_cold = interactions["user_id"].astype(str).isin(cold)  # _pick compares ids as text
    held = interactions[is_cold].sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return ColdUserSplit(
        train=interactions[~is_cold].reset_index(drop=True),
        cold=held.reset_index(drop=True),
        cold_users=sorted(cold.tolist()),
    )


def stratified_split(
    interactions: pd.DataFrame,
    ratio: float = 0.75,
    min_rating: int = 1,
    filter_by: str = "item",
    seed: int = 42,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Microsoft Recommenders' `python_stratified_split` (the vectorised version in
    recommenders/datasets/python_splitters.py, `_do_stratification`, since PR #1802), so `ml100k-msr`
    numbers are comparable with theirs: given the same rows in the same order, the same rows land in train.

    Their order of operations, kept here: drop the groups (items or users) with fewer than `min_rating`
    rows; draw one uniform number per remaining row, in row order, from the legacy `np.random.seed(seed)`
    stream (a private RandomState here, so the global one is left alone); within each group the rows with
    the smallest draws go to train, `round(ratio * n)` of them, rounded half to even (n=2 -> 2, n=6 -> 4,
    n=1 -> 1), and the rest to test. At 0.75, groups of one or two rows therefore have nothing in test.
    Rows keep their input index labels and come back sorted by group and draw, as MSR returns them.
    """
    if not isinstance(ratio, float) or not 0 < ratio < 1:
        raise ValueError("ratio must be a float between 0 and 1")
    if filter_by not in ("user", "item"):
        raise ValueError("filter_by must be 'user' or 'item'")
    if min_rating < 1:
        raise ValueError("min_rating must be at least 1")
    key = f"{filter_by}_id"
    data = interactions
    if min_rating > 1:
        data = data[data.groupby(key)[key].transform("size") >= min_rating]
    draws = np.random.RandomState(seed).rand(len(data))
    data = data.assign(_draw=draws).sort_values([key, "_draw"])
    groups = data.groupby(key)
    count = groups[key].transform("size")
    rank = groups.cumcount() + 1
    train_end, test_end = np.cumsum([ratio, 1 - ratio])  # MSR's thresholds; test_end is 1.0 up to rounding
    cut, end = np.round(train_end * count), np.round(test_end * count)
    data = data.drop(columns="_draw")
    return data[rank <= cut], data[(rank > cut) & (rank <= end)]
