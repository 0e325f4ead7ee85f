"""The evaluation protocols: exact data splits, and the validation data each one tunes on.

Every protocol is deterministic (seed 42). Test data is only ever read by `run_ranking` after a
model is tuned; the validation data comes out of the training side of each split:

* `ml100k-msr`: MSR's stratified split of the training part again (0.75, by item);
* `ml1m-cold-items`: the cold validation items (the split's own 50/50 halves);
* `ml1m-cold-users`: a further 10% of all users, held out of training the same way;
* `ml1m-scenes`: the 10% validation part of its 80/10/10 split (see `scenes.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmrec.data.catalog import Catalog, load_catalog
from llmrec.data.splits import (
    ColdItemSplit,
    cold_item_split,
    cold_user_split,
    stratified_split,
)
from llmrec.evaluation.tasks import (
    Items,
    Queries,
    TrainData,
    catalog_items,
    queries,
    train_data,
    user_profiles,
)

COLD_USER_STEPS = (0, 1, 3, 5)  # interactions revealed: the profile alone, then the first 1, 3 and 5


@dataclass
class RankingSetup:
    """Everything `run_ranking` needs. `tune_train` is what models are tuned on against `valid`;
    `train` is what they are finally fitted on before `test` (the same object when no refit is needed).
    The first metric is the tuning objective."""

    name: str
    catalog: Catalog  # what the served model starts from (its interactions replaced by the training ones)
    items: Items
    tune_train: TrainData
    valid: list[Queries]
    train: TrainData
    test: list[Queries]
    metrics: list[str]
    k: int


def _sample_users(frame: pd.DataFrame, max_users: int | None, seed: int = 42) -> pd.DataFrame:
    """The rows of at most `max_users` users drawn at random (the reduced CI versions)."""
    if max_users is None:
        return frame
    users = np.sort(frame["user_id"].unique())
    keep = np.random.default_rng(seed).choice(users, size=min(max_users, len(users)), replace=False)
    return frame[frame["user_id"].isin(keep)]


def ml100k_msr(max_users: int | None = None, catalog: Catalog | None = None) -> RankingSetup:
    """Microsoft Recommenders' MovieLens 100K benchmark: python_stratified_split(ratio=0.75,
    min_rating=1, filter_by="item", seed=42); top-10 with seen items removed; every test rating is
    relevant. `max_users` subsamples the test and validation users only (training stays whole)."""
    catalog = catalog or load_catalog("movielens-100k")
    items, profiles = catalog_items(catalog), user_profiles(catalog)
    train, test = stratified_split(catalog.interactions, ratio=0.75, min_rating=1, filter_by="item", seed=42)
    inner_train, inner_valid = stratified_split(train, ratio=0.75, min_rating=1, filter_by="item", seed=42)
    final = train_data(train, items, profiles)
    return RankingSetup(
        name="ml100k-msr",
        catalog=catalog,
        items=items,
        tune_train=train_data(inner_train, items, profiles),
        valid=[queries("top-10", inner_train, _sample_users(inner_valid, max_users), items, profiles)],
        train=final,
        test=[queries("top-10", train, _sample_users(test, max_users), items, profiles)],
        metrics=["ndcg@10", "precision@10", "recall@10", "map"],
        k=10,
    )


def ml1m_cold_items_split(catalog: Catalog | None = None) -> ColdItemSplit:
    """The exact `ml1m-cold-items` split, for training jobs to fit on its `train` part only:
    20% of the rated MovieLens 1M items are cold (seed 42) and none of their interactions is in
    `train`; warm interactions are split 80/10/10 (train / warm_valid / warm_test); the cold items
    are split 50/50 into `cold_valid_items` and `cold_test_items`. Item ids are 'Title (Year)'."""
    catalog = catalog or load_catalog("movielens-1m")
    return cold_item_split(catalog.interactions, cold_fraction=0.2, seed=42)


def ml1m_cold_items(max_users: int | None = None, catalog: Catalog | None = None) -> RankingSetup:
    """Rank each user's cold test items among the cold test items only (warm items masked, seen
    items removed); users are served from their training interactions. Every interaction with a
    cold item counts as relevant. Tuned on the cold validation items, ranked among themselves."""
    catalog = catalog or load_catalog("movielens-1m")
    items, profiles = catalog_items(catalog), user_profiles(catalog)
    split = ml1m_cold_items_split(catalog)
    train = train_data(split.train, items, profiles)

    def cold(name: str, targets: pd.DataFrame, cold_items: list[str]) -> Queries:
        mask = pd.Index(cold_items).get_indexer(items.ids) >= 0
        return queries(name, split.train, _sample_users(targets, max_users), items, profiles, candidates=mask)

    return RankingSetup(
        name="ml1m-cold-items",
        catalog=catalog,
        items=items,
        tune_train=train,
        valid=[cold("cold-items", split.cold_valid, split.cold_valid_items)],
        train=train,
        test=[cold("cold-items", split.cold_test, split.cold_test_items)],
        metrics=["ndcg@20", "recall@20"],
        k=20,
    )


def _step_queries(
    held: pd.DataFrame, items: Items, profiles: dict, max_users: int | None
) -> list[Queries]:
    """One query set per step: the profile plus the first n interactions in time order. The targets
    are the same at every step, each user's interactions after their first max(steps), so the steps
    compare; held-out users with no such interaction are left out."""
    held = _sample_users(held, max_users)
    position = held.groupby("user_id").cumcount()
    targets = held[position >= max(COLD_USER_STEPS)]
    out = []
    for n in COLD_USER_STEPS:
        name = "profile" if n == 0 else f"first-{n}"
        out.append(queries(name, held[position < n], targets, items, profiles))
    return out


def ml1m_cold_users(max_users: int | None = None, catalog: Catalog | None = None) -> RankingSetup:
    """20% of MovieLens 1M users held out whole (seed 42), served from their profile alone and then
    with their first 1, 3 and 5 interactions; all items ranked, seen ones removed; Recall@20, NDCG@20.
    Tuned on a further 10% of all users held out of training the same way."""
    catalog = catalog or load_catalog("movielens-1m")
    items, profiles = catalog_items(catalog), user_profiles(catalog)
    split = cold_user_split(catalog.interactions, cold_fraction=0.2, seed=42)
    inner = cold_user_split(split.train, cold_fraction=0.125, seed=42)
    return RankingSetup(
        name="ml1m-cold-users",
        catalog=catalog,
        items=items,
        tune_train=train_data(inner.train, items, profiles),
        valid=_step_queries(inner.cold, items, profiles, max_users),
        train=train_data(split.train, items, profiles),
        test=_step_queries(split.cold, items, profiles, max_users),
        metrics=["ndcg@20", "recall@20"],
        k=20,
    )


RANKING_PROTOCOLS = {"ml100k-msr": ml100k_msr, "ml1m-cold-items": ml1m_cold_items, "ml1m-cold-users": ml1m_cold_users}
