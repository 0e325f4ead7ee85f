"""The content-side signals of the served blend, fitted per scene when a Ranker starts.

Similarity and EASE alone leave a cold item (no interactions) with nothing but its text; these
give it a collaborative and a popularity estimate from the items it resembles, and give a user
known only by a profile what people like them chose:

* `bridge`: the user's EASE scores on the candidate's nearest warm items in the encoder's space,
  similarity-weighted (a content-to-collaborative bridge);
* `popularity`: log(1 + interactions), and for an item with none, a ridge regression's estimate
  from its vector and attribute tokens, fitted on the scene's warm items;
* `demographic`: the log-rate at which users sharing each of the profile's values chose the item.

Everything is computed for the retrieved candidates only, from the vectors the retriever returns,
so an item added over HTTP gets all three the moment it is indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.items import ItemRecord
from llmrec.data.text import attribute_tokens

BRIDGE_NEIGHBOURS = 50
MIN_TOKEN_ITEMS = 5  # an attribute token seen on fewer items is noise to the popularity regression
MAX_TOKENS = 2000
MIN_GROUP_USERS = 20  # a profile value shared by fewer users gives no demographic rate
MAX_PROFILE_VALUES = 100  # keys with more distinct values (ids, zip codes) are not demographics
RIDGE_ALPHA = 10.0


class SceneSignals:
    """Bridge neighbours, content popularity and demographic rates of one scene."""

    def __init__(
        self,
        warm_ids: list[str],
        warm_vectors: np.ndarray,
        vocabulary: dict[str, int],
        coefficients: np.ndarray | None,
        rates: dict[tuple[str, str], dict[str, float]],
        floors: dict[tuple[str, str], float],
    ) -> None:
        self.warm_ids = warm_ids
        self.warm_vectors = warm_vectors
        self.vocabulary = vocabulary
        self.coefficients = coefficients
        self.rates = rates
        self.floors = floors
        self._warm_position = {item_id: p for p, item_id in enumerate(warm_ids)}
        self._neighbours: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}  # item -> (vector hash, warm positions, weights)

    @classmethod
    def fit(
        cls,
        records: Sequence[ItemRecord],
        vectors: np.ndarray,
        interactions: pd.DataFrame,
        profiles: Mapping[str, Mapping[str, Any]],
    ) -> SceneSignals:
        """From the scene's items (with their index vectors, same order), its (user_id, item_id)
        interactions and the users' profiles."""
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
        warm_ids = [r.item_id for r, w in zip(records, warm) if w]
        return cls(warm_ids, np.ascontiguousarray(vectors[warm], dtype=np.float32), vocabulary, coefficients, rates, floors)

    def bridge(self, item_ids: Sequence[str], vectors: np.ndarray, scores_of: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        """Per candidate, the similarity-weighted mean of `scores_of` (the user's EASE scores) over
        its nearest warm items, itself left out."""
        out = np.zeros(len(item_ids), np.float32)
        if not len(self.warm_ids) or not len(item_ids):
            return out
        neighbours = self._nearest(item_ids, vectors)
        used = np.unique(np.concatenate([n for n, _ in neighbours]))
        if not len(used):
            return out
        user = np.zeros(len(self.warm_ids), np.float32)
        user[used] = np.maximum(scores_of([self.warm_ids[p] for p in used]), 0.0)
        for row, (positions, weights) in enumerate(neighbours):
            total = weights.sum()
            if total > 0:
                out[row] = float(user[positions] @ weights / total)
        return out

    def _nearest(self, item_ids: Sequence[str], vectors: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each item's nearest warm items (itself left out) and their positive similarities, cached until
        its vector changes; the items not cached are found with one matrix product."""
        fingerprints = [hash(np.asarray(v).tobytes()) for v in vectors]
        missing = [row for row, (item_id, f) in enumerate(zip(item_ids, fingerprints)) if self._neighbours.get(item_id, (None,))[0] != f]
        if missing:
            similarity = np.asarray(vectors, np.float32)[missing] @ self.warm_vectors.T
            n = min(BRIDGE_NEIGHBOURS + 1, similarity.shape[1])
            tops = np.argpartition(-similarity, n - 1, axis=1)[:, :n]
            for row, top, sims in zip(missing, tops, similarity):
                top = top[top != self._warm_position.get(item_ids[row], -1)][:BRIDGE_NEIGHBOURS]
                self._neighbours[item_ids[row]] = (fingerprints[row], top, np.maximum(sims[top], 0.0).astype(np.float32))
        return [self._neighbours[item_id][1:] for item_id in item_ids]

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
