"""Collaborative signals from interactions: item-item weights (EASE or co-occurrence) and popularity.

Both are fitted once per scene at start-up; a user's score is their *current* history times the
item-item matrix, so new events change the next answer without refitting anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import lapack


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix through Cholesky (about 2.5x faster than inv)."""
    factor, info = lapack.dpotrf(matrix, lower=1)
    if info == 0:
        inverse, info = lapack.dpotri(factor, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (LAPACK info {info})")
    return np.tril(inverse) + np.tril(inverse, -1).T


class ItemItemModel:
    """Scores every known item of one scene for a history: s = x_history · W.

    EASE (Steck, 2019) in closed form when the scene has at most `max_dense_items` interacted
    items; above that, a sparse cosine co-occurrence matrix keeps memory linear in the data.
    """

    def __init__(self, item_ids: Sequence[str], weights: np.ndarray | sp.csr_matrix, method: str) -> None:
        self.item_ids = list(item_ids)
        self.position = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.weights = weights
        self.method = method

    @classmethod
    def fit(
        cls,
        interactions: pd.DataFrame,
        l2: float = 500.0,
        max_dense_items: int = 20_000,
    ) -> ItemItemModel | None:
        """Fit on (user_id, item_id) pairs, every interaction counting as one implicit signal."""
        pairs = interactions[["user_id", "item_id"]].drop_duplicates()
        if pairs.empty:
            return None
        user_index, users = pd.factorize(pairs["user_id"])
        item_index, items = pd.factorize(pairs["item_id"], sort=True)
        x = sp.csr_matrix((np.ones(len(pairs), np.float32), (user_index, item_index)), shape=(len(users), len(items)))
        if len(items) <= max_dense_items:
            gram = (x.T @ x).toarray().astype(np.float64)
            gram[np.diag_indices_from(gram)] += l2
            inverse = _spd_inverse(gram)
            weights = -inverse / np.diag(inverse)
            np.fill_diagonal(weights, 0.0)
            return cls(items.tolist(), weights.astype(np.float32), "ease")
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        scaled = x @ sp.diags(1.0 / np.maximum(norms, 1e-12))
        cosine = (scaled.T @ scaled).tocsr()
        cosine.setdiag(0.0)
        cosine.eliminate_zeros()
        return cls(items.tolist(), cosine.astype(np.float32), "cooccurrence")

    def scores(self, history: Sequence[str]) -> np.ndarray:
        """One score per item in `item_ids` (zeros when no history item is known to the model)."""
        rows = [self.position[i] for i in dict.fromkeys(history) if i in self.position]
        if not rows:
            return np.zeros(len(self.item_ids), np.float32)
        summed = self.weights[rows].sum(axis=0)
        return np.asarray(summed, dtype=np.float32).ravel()

    def strongest_source(self, history: Sequence[str], item_id: str) -> str | None:
        """The history item that contributes most to `item_id`'s score (for a 'because you liked' reason)."""
        column = self.position.get(item_id)
        rows = [i for i in dict.fromkeys(history) if i in self.position]
        if column is None or not rows:
            return None
        weights = self.weights[[self.position[i] for i in rows]][:, column]
        weights = np.asarray(weights.toarray() if sp.issparse(weights) else weights).ravel()
        best = int(np.argmax(weights))
        return rows[best] if weights[best] > 0 else None


class Popularity:
    """Interaction counts per item, kept current as events arrive; the prior is log-scaled to [0, 1]."""

    def __init__(self, interactions: pd.DataFrame) -> None:
        self.counts: dict[str, int] = interactions["item_id"].value_counts().to_dict()
        self._max = max(self.counts.values(), default=0)

    def add(self, item_id: str, n: int = 1) -> None:
        self.counts[item_id] = self.counts.get(item_id, 0) + n
        self._max = max(self._max, self.counts[item_id])

    def prior(self, item_id: str) -> float:
        if self._max == 0:
            return 0.0
        return float(np.log1p(self.counts.get(item_id, 0)) / np.log1p(self._max))
