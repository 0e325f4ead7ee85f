"""What every ranking protocol hands to a model, and how its answer is scored.

A protocol fixes an item universe (the columns), a training matrix, and sets of query users with
the items that count as hits. Models only ever see `TrainData` and a `Queries`' history/profiles,
never the targets, so no protocol can leak its test set into a model by accident.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec.data.catalog import Catalog
from llmrec.data.text import attribute_tokens, render_item, render_user
from llmrec.evaluation import metrics
from llmrec.training.pairs import (  # the user text the models were trained on
    LIKED_TITLES,
    POSITIVE_RATING,
)


@dataclass
class Items:
    """The item universe of a protocol: ids (column order), rendered text, attribute tokens and titles."""

    ids: np.ndarray
    texts: list[str]
    tokens: list[list[str]]
    titles: list[str] | None = None  # None: the ids are the titles

    @property
    def position(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.ids)}


@dataclass
class TrainData:
    """What a model may learn from: binary training users x items, and each training user's profile."""

    items: Items
    matrix: sp.csr_matrix
    profiles: list[dict[str, Any]]
    days: sp.csr_matrix | None = None  # when each pair happened (days since the epoch), same pattern as matrix
    frame: pd.DataFrame | None = None  # the interactions themselves (what the served recommender is started on)


@dataclass
class Queries:
    """Users to rank for. `history` rows are what a model may condition on (and are never recommended
    back); `relevant` holds the held-out column indices that count as hits; `candidates`, when set,
    is the boolean mask of columns that may be ranked at all."""

    name: str
    user_ids: list[str]
    history: sp.csr_matrix
    profiles: list[dict[str, Any]]
    relevant: list[set[int]]
    candidates: np.ndarray | None = None
    history_days: sp.csr_matrix | None = None
    texts: list[str] | None = None  # each user as the recommender renders them (liked titles, profile)


def catalog_items(catalog: Catalog) -> Items:
    """Every catalog item, rendered exactly as the recommender renders it for the encoder."""
    facts: dict[str, list[tuple[str, str]]] = {}
    for item_id, relation, obj in catalog.kg.itertuples(index=False):
        facts.setdefault(item_id, []).append((relation, obj))
    ids, texts, tokens, titles = [], [], [], []
    for row in catalog.items.itertuples(index=False):
        attributes = json.loads(row.attributes)
        ids.append(row.item_id)
        texts.append(render_item(row.scene, row.title, attributes, row.text, facts.get(row.item_id, ())))
        tokens.append(attribute_tokens(attributes))
        titles.append(row.title)
    return Items(np.array(ids, dtype=object), texts, tokens, titles)


def user_profiles(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Profile attributes per user id, without the zip code (too fine-grained to generalise)."""
    return {
        user_id: {k: v for k, v in json.loads(attributes).items() if k != "zip_code"}
        for user_id, attributes in zip(catalog.users["user_id"], catalog.users["attributes"])
    }


def interaction_matrix(frame: pd.DataFrame, user_ids: Sequence[str], items: Items, days: bool = False) -> sp.csr_matrix:
    """Users x items matrix of the (user, item) pairs in `frame`, rows in `user_ids` order: 1 per
    pair, or with `days` the day it happened (the latest, for a repeated pair)."""
    frame = frame.drop_duplicates(["user_id", "item_id"], keep="last")
    rows = pd.Index(user_ids).get_indexer(frame["user_id"])
    cols = pd.Index(items.ids).get_indexer(frame["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    values = frame["timestamp"].to_numpy()[keep] / 86400.0 if days else np.ones(int(keep.sum()))
    return sp.csr_matrix((values, (rows[keep], cols[keep])), shape=(len(user_ids), len(items.ids)), dtype=np.float32 if not days else np.float64)


def train_data(frame: pd.DataFrame, items: Items, profiles: dict[str, dict[str, Any]]) -> TrainData:
    users = sorted(frame["user_id"].unique())
    return TrainData(
        items, interaction_matrix(frame, users, items), [profiles.get(u, {}) for u in users], interaction_matrix(frame, users, items, days=True), frame
    )


def queries(
    name: str,
    history: pd.DataFrame,
    targets: pd.DataFrame,
    items: Items,
    profiles: dict[str, dict[str, Any]],
    candidates: np.ndarray | None = None,
    users: Sequence[str] | None = None,
) -> Queries:
    """Queries for the users with at least one target (or `users`), history and targets as frames."""
    user_ids = sorted(targets["user_id"].unique()) if users is None else list(users)
    target = interaction_matrix(targets, user_ids, items).tolil()
    user_profiles = [profiles.get(u, {}) for u in user_ids]
    return Queries(
        name=name,
        user_ids=user_ids,
        history=interaction_matrix(history, user_ids, items),
        history_days=interaction_matrix(history, user_ids, items, days=True),
        profiles=user_profiles,
        relevant=[set(row) for row in target.rows],
        candidates=candidates,
        texts=user_texts(history, user_ids, user_profiles, items),
    )


def user_texts(history: pd.DataFrame, user_ids: Sequence[str], profiles: Sequence[dict[str, Any]], items: Items) -> list[str]:
    """What the recommender embeds (and the cross-encoder reads) for each user: the titles of their
    last liked items in time order, then their profile (`Users.prepare`'s text)."""
    titles = dict(zip(items.ids, items.titles or items.ids))
    liked = history[history["rating"] >= POSITIVE_RATING].sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    by_user = liked.groupby("user_id")["item_id"].agg(list).to_dict()
    return [
        render_user(liked_titles=[titles[i] for i in by_user.get(u, []) if i in titles][-LIKED_TITLES:], profile=profile)
        for u, profile in zip(user_ids, profiles)
    ]


def top_k(scores: np.ndarray, queries: Queries, k: int) -> list[list[int]]:
    """Each query's k best columns, best first, with history items and non-candidates left out."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    rows, cols = queries.history.nonzero()
    scores[rows, cols] = -np.inf
    if queries.candidates is not None:
        scores[:, ~queries.candidates] = -np.inf
    k = min(k, scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(scores, best, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    best, picked = np.take_along_axis(best, order, axis=1), np.take_along_axis(picked, order, axis=1)
    return [row[np.isfinite(values)].tolist() for row, values in zip(best, picked)]


Metric = tuple[str, Callable[..., float], int]
METRICS: dict[str, Callable[..., float]] = {
    "ndcg": metrics.ndcg_at_k,
    "precision": metrics.precision_at_k,
    "recall": metrics.recall_at_k,
    "map": metrics.map,
}


def metric_specs(names: Sequence[str]) -> list[Metric]:
    """'ndcg@10' -> ('ndcg@10', ndcg_at_k, 10); MSR's 'map' has no @ and takes the list length k=10."""
    specs = []
    for name in names:
        base, _, k = name.partition("@")
        specs.append((name, METRICS[base], int(k or 10)))
    return specs


def evaluate(queries: Queries, ranked: list[list[int]], specs: Sequence[Metric]) -> dict[str, float]:
    """The metrics of ranked lists against the queries' targets (llmrec.evaluation.metrics, MSR conventions).
    Only users with targets count: MSR keeps the users present in both test and predictions."""
    recommended = {u: r for u, r, rel in zip(queries.user_ids, ranked, queries.relevant) if rel}
    relevant = {u: rel for u, rel in zip(queries.user_ids, queries.relevant) if rel}
    return {name: float(fn(recommended, relevant, k)) for name, fn, k in specs}


def objective_value(scores: np.ndarray, queries: Queries, objective: Metric) -> float:
    """One metric of the top-k lists that `scores` give (tuning compares models by it)."""
    name, _, k = objective
    return evaluate(queries, top_k(scores, queries, k), [objective])[name]
