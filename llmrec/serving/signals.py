"""The content-side signals of the served blend, fitted per scene when a Ranker starts.

Similarity and EASE alone leave a cold item (no interactions) with nothing but its text; these
give it a collaborative and a popularity estimate from the items it resembles, and give a user
known only by a profile what people like them chose:

* `bridge`: the user's collaborative (EASE) scores over the scene's warm items, from every item
  they interacted with (EASE's own input, which predicts better than liked items alone: see
  docs/evaluation.md), regressed on those items' content (their vectors and attribute tokens,
  ridge), evaluated at the candidate's content: a learned content-to-collaborative bridge that
  scores a cold item by what its content says about the user's collaborative taste;
* `popularity`: log(1 + interactions), and for an item with none, a ridge regression's estimate
  from its vector and attribute tokens, fitted on the scene's warm items;
* `demographic`: the log-rate at which users sharing each of the profile's values chose the item.

Everything is computed for the retrieved candidates only, from the vectors the retriever returns,
so an item added over HTTP gets all three the moment it is indexed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve

from llmrec.data.items import ItemRecord
from llmrec.data.text import attribute_tokens
from llmrec.serving.collaborative import ItemItemModel

BRIDGE_ALPHA = 1.0  # the bridge regression's ridge, chosen on ml1m-cold-items validation (docs/evaluation.md)
MAX_BRIDGE_ITEMS = 50_000  # the most interacted warm items the bridge regresses on: memory and per-request work stay bounded
MIN_TOKEN_ITEMS = 5  # an attribute token seen on fewer items is noise to the popularity regression
MAX_TOKENS = 2000
MIN_GROUP_USERS = 20  # a profile value shared by fewer users gives no demographic rate
MAX_PROFILE_VALUES = 100  # keys with more distinct values (ids, zip codes) are not demographics
RIDGE_ALPHA = 10.0


class SceneSignals:
    """The bridge regression, content popularity and demographic rates of one scene."""

    def __init__(
        self,
        vocabulary: dict[str, int],
        coefficients: np.ndarray | None,
        rates: dict[tuple[str, str], dict[str, float]],
        floors: dict[tuple[str, str], float],
        bridge: Bridge | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.coefficients = coefficients
        self.rates = rates
        self.floors = floors
        self._bridge = bridge

    @classmethod
    def fit(
        cls,
        records: Sequence[ItemRecord],
        vectors: np.ndarray,
        interactions: pd.DataFrame,
        profiles: Mapping[str, Mapping[str, Any]],
        collaborative: ItemItemModel | None = None,
    ) -> SceneSignals:
        """From the scene's items (with their index vectors, same order), its (user_id, item_id)
        interactions, the users' profiles and the scene's collaborative model."""
        counts = interactions["item_id"].value_counts()
        warm = np.array([counts.get(r.item_id, 0) > 0 for r in records], dtype=bool)
        vocabulary = _vocabulary(records)
        coefficients = None
        if warm.sum() >= 10:
            features = _features(records, vectors, vocabulary)
            target = np.log1p(np.array([counts.get(r.item_id, 0) for r in records], dtype=np.float64))
            x = features[warm].astype(np.float64)
            coefficients = np.linalg.solve(x.T @ x + RIDGE_ALPHA * np.eye(x.shape[1]), x.T @ target[warm]).astype(np.float32)
        rates, floors = _demographic_rates(interactions, profiles)
        bridge = Bridge.fit(records, vectors, vocabulary, collaborative, counts) if collaborative is not None else None
        return cls(vocabulary, coefficients, rates, floors, bridge)

    def bridge(self, records: Sequence[ItemRecord], vectors: np.ndarray, user_scores: np.ndarray) -> np.ndarray:
        """Per candidate, the user's collaborative score predicted from its content; `user_scores`
        are the user's scores over every item of the collaborative model (`ItemItemModel.scores`)."""
        if self._bridge is None or not len(records):
            return np.zeros(len(records), np.float32)
        return self._bridge.predict(_features(records, vectors, self.vocabulary), user_scores)

    def popularity(self, records: Sequence[ItemRecord], vectors: np.ndarray, counts: Mapping[str, int]) -> np.ndarray:
        """log(1 + interactions), or the content estimate for items with none (0 without a regression)."""
        observed = np.log1p(np.array([counts.get(r.item_id, 0) for r in records], dtype=np.float32))
        cold = observed == 0
        if self.coefficients is None or not cold.any():
            return observed
        cold_records = [r for r, c in zip(records, cold) if c]
        estimate = _features(cold_records, vectors[cold], self.vocabulary) @ self.coefficients
        observed[cold] = np.maximum(estimate, 0.0)
        return observed

    def demographic(self, item_ids: Sequence[str], profile: Mapping[str, Any]) -> np.ndarray:
        """Sum over the profile's values of log P(chose the item | shares the value)."""
        out = np.zeros(len(item_ids), np.float32)
        for key, value in profile.items():
            group = (key, str(value))
            rates = self.rates.get(group)
            if rates is not None:
                floor = self.floors[group]
                out += np.array([rates.get(i, floor) for i in item_ids], dtype=np.float32)
        return out


class Bridge:
    """Ridge regression of a user's collaborative scores over the warm items on those items' content.

    Why: a cold item has no collaborative score, but its content ([vector, attribute tokens, 1])
    resembles warm items whose scores the user has. Per request, β = (FᵀF + αI)⁻¹ Fᵀ s over the warm
    items' features F and the user's scores s, and a candidate scores f·β: the Cholesky factor of
    FᵀF + αI is computed once per scene, so a request costs one pass over F and a small solve."""

    def __init__(self, positions: np.ndarray, features: np.ndarray, factor: tuple[np.ndarray, bool]) -> None:
        self.positions = positions  # each warm item's column in the collaborative model
        self.features = features
        self.factor = factor

    @classmethod
    def fit(
        cls, records: Sequence[ItemRecord], vectors: np.ndarray, vocabulary: Mapping[str, int], model: ItemItemModel, counts: Mapping[str, int]
    ) -> Bridge | None:
        rows = [(model.position[r.item_id], n) for n, r in enumerate(records) if r.item_id in model.position]
        if len(rows) < 10:
            return None
        rows = sorted(rows, key=lambda row: -counts.get(records[row[1]].item_id, 0))[:MAX_BRIDGE_ITEMS]
        positions, order = (np.asarray(part, dtype=np.int64) for part in zip(*rows))
        features = _features([records[n] for n in order], np.asarray(vectors)[order], vocabulary)
        gram = features.T.astype(np.float64) @ features.astype(np.float64)
        factor = cho_factor(gram + BRIDGE_ALPHA * np.eye(features.shape[1]))
        return cls(positions, features, factor)

    def predict(self, candidates: np.ndarray, user_scores: np.ndarray) -> np.ndarray:
        beta = cho_solve(self.factor, (self.features.T @ np.asarray(user_scores, np.float32)[self.positions]).astype(np.float64))
        return (np.asarray(candidates, np.float64) @ beta).astype(np.float32)


def _vocabulary(records: Sequence[ItemRecord]) -> dict[str, int]:
    counts = pd.Series([t for r in records for t in set(attribute_tokens(r.attributes))]).value_counts()
    kept = counts[counts >= MIN_TOKEN_ITEMS].index[:MAX_TOKENS]
    return {token: i for i, token in enumerate(sorted(kept))}


def _features(records: Sequence[ItemRecord], vectors: np.ndarray, vocabulary: Mapping[str, int]) -> np.ndarray:
    """[vector, attribute-token one-hot, 1] per item: what the popularity regression reads."""
    onehot = np.zeros((len(records), len(vocabulary)), np.float32)
    for row, record in enumerate(records):
        columns = [vocabulary[t] for t in attribute_tokens(record.attributes) if t in vocabulary]
        onehot[row, columns] = 1.0
    return np.hstack([np.asarray(vectors, np.float32).reshape(len(records), -1), onehot, np.ones((len(records), 1), np.float32)])


def _demographic_rates(
    interactions: pd.DataFrame, profiles: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[tuple[str, str], dict[str, float]], dict[tuple[str, str], float]]:
    """log((users of the group who chose the item + 1) / (users of the group + 2)) per profile value,
    for keys with few distinct values and groups of at least MIN_GROUP_USERS interacting users."""
    pairs = interactions[["user_id", "item_id"]].drop_duplicates()
    users = pairs["user_id"].unique()
    rows = [(u, key, str(value)) for u in users for key, value in profiles.get(u, {}).items()]
    if not rows:
        return {}, {}
    groups = pd.DataFrame(rows, columns=["user_id", "key", "value"])
    distinct = groups.groupby("key")["value"].nunique()
    groups = groups[groups["key"].isin(distinct[distinct <= MAX_PROFILE_VALUES].index)]
    sizes = groups.groupby(["key", "value"]).size()
    sizes = sizes[sizes >= MIN_GROUP_USERS]
    chosen = pairs.merge(groups, on="user_id").groupby(["key", "value", "item_id"]).size()
    rates: dict[tuple[str, str], dict[str, float]] = {}
    floors: dict[tuple[str, str], float] = {}
    for (key, value), size in sizes.items():
        counts = chosen.loc[(key, value)]
        rates[(key, value)] = dict(zip(counts.index, np.log((counts.to_numpy() + 1.0) / (size + 2.0)).tolist()))
        floors[(key, value)] = float(np.log(1.0 / (size + 2.0)))
    return rates, floors
