"""Ranking and classification metrics with Microsoft Recommenders' definitions (the `ml100k-msr` protocol).

They follow recommenders/evaluation/python_evaluation.py (recommenders 1.2.x) with binary relevance:
every held-out item of a user is relevant, and the recommended list is cut to its first k items.
Two MSR conventions are kept on purpose, so numbers compare with theirs:

* precision, recall, MAP (and hit rate) average over the users that have both relevant items and a
  recommended list; a user with no hit still counts, with 0;
* nDCG averages over every user with relevant items: one with no recommended list counts as 0.

Inputs are plain dicts: `recommended[user]` is a ranked list of distinct items (best first) and
`relevant[user]` a set; an empty list or set is the same as a missing user.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence, Set

import numpy as np
from scipy.stats import rankdata

Recommended = Mapping[Hashable, Sequence[Hashable]]
Relevant = Mapping[Hashable, Set[Hashable]]


def _hits(recommended: Recommended, relevant: Relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per user in both inputs: True where the item at that position (1..k) is relevant;
    plus each such user's number of relevant items."""
    if k < 1:
        raise ValueError("k must be at least 1")
    users = [u for u, items in recommended.items() if len(items) and relevant.get(u)]
    width = min(k, max((len(recommended[u]) for u in users), default=0))
    hits = np.zeros((len(users), width), dtype=bool)
    for row, user in enumerate(users):
        top = recommended[user][:k]
        hits[row, : len(top)] = [item in relevant[user] for item in top]
    return hits, np.array([len(relevant[u]) for u in users], dtype=float)


def _mean(per_user: np.ndarray, n_users: int) -> float:
    return float(per_user.sum() / n_users) if n_users else 0.0


def precision_at_k(recommended: Recommended, relevant: Relevant, k: int = 10) -> float:
    """Hits in the top k over k, even when the list is shorter than k (MSR and Spark divide by k)."""
    hits, _ = _hits(recommended, relevant, k)
    return _mean(hits.sum(axis=1) / k, len(hits))


def recall_at_k(recommended: Recommended, relevant: Relevant, k: int = 10) -> float:
    """Hits in the top k over the user's number of relevant items (not capped at k, as in MSR)."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _mean(hits.sum(axis=1) / n_relevant, len(hits))


def hit_rate_at_k(recommended: Recommended, relevant: Relevant, k: int = 10) -> float:
    """Share of users with at least one relevant item in the top k. MSR has no such Python metric;
    this one averages over the same users as precision@k."""
    hits, _ = _hits(recommended, relevant, k)
    return _mean(hits.any(axis=1), len(hits))


def _average_precision(hits: np.ndarray) -> np.ndarray:
    """Per user, the sum of precision@i over the positions i that hold a hit."""
    positions = np.arange(1, hits.shape[1] + 1)
    return (np.cumsum(hits, axis=1) / positions * hits).sum(axis=1)


def map(recommended: Recommended, relevant: Relevant, k: int = 10) -> float:  # noqa: A001 - MSR's name
    """MSR's `map`: average precision over the top k, divided by ALL of the user's relevant items
    (not min(k, relevant)), so a user with more than k relevant items cannot reach 1."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _mean(_average_precision(hits) / n_relevant, len(hits))


def map_at_k(recommended: Recommended, relevant: Relevant, k: int = 10) -> float:
    """MSR's `map_at_k` (Spark's MAP@k): as `map`, but divided by min(k, relevant items)."""
    hits, n_relevant = _hits(recommended, relevant, k)
    return _mean(_average_precision(hits) / np.minimum(n_relevant, k), len(hits))


def ndcg_at_k(recommended: Recommended, relevant: Relevant, k: int = 10) -> float:
    """Binary nDCG@k with MSR's natural-log discount 1/ln(1 + rank) (the base cancels in the ratio).
    The ideal list puts min(k, relevant items) hits first. Averaged over every user with relevant
    items, as MSR's outer merge with the test frame does: a test user with no list scores 0."""
    hits, n_relevant = _hits(recommended, relevant, k)
    discount = 1.0 / np.log1p(np.arange(1, hits.shape[1] + 1))
    ideal = np.cumsum(1.0 / np.log1p(np.arange(1, min(k, int(n_relevant.max(initial=0))) + 1)))
    dcg = (hits * discount).sum(axis=1)
    idcg = ideal[np.minimum(n_relevant, k).astype(int) - 1]
    n_test_users = sum(1 for items in relevant.values() if items)
    return _mean(dcg / idcg, n_test_users)


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC over all rows (MSR's `auc` is sklearn's, not per user): the chance that a random
    positive outscores a random negative, a tie counting one half, computed from average ranks."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    rank_sum = rankdata(scores)[labels].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(
    labels: Sequence[int] | np.ndarray, probabilities: Sequence[float] | np.ndarray, eps: float = 1e-15
) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps] so a confident miss is
    finite (sklearn's historical default, which MSR's `logloss` calls)."""
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), eps, 1 - eps)
    if y.size == 0:
        raise ValueError("logloss needs at least one row")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
