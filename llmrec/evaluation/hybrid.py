"""The llmrec pipeline as an offline ranker: language-model signals blended with collaborative ones.

The online pipeline blends semantic, collaborative (EASE) and popularity scores; offline the same
signals are computed for every item at once (the semantic one twice: the encoder's vectors and
TF-IDF over the same rendered text), plus those that make cold start work:

* `bridge`: a cold item has no EASE column, so it borrows the columns of its nearest warm items in
  the encoder's space (score = the user's EASE scores on those neighbours, similarity-weighted);
* `content_knn`: the same neighbours, weighted by the user's history alone;
* `popularity`: log(1 + interactions), and for an item with none, what a ridge regression predicts
  from its text vector and attribute tokens (fitted on the warm items);
* `demographic`: for a user with only a profile, what users with the same age, gender and
  occupation interacted with;
* `period_popularity`: what was popular while the user was active (training interactions within a
  few days of the user's first and last known one), as MSR's SAR also reads time.

Each signal is z-scored per user over the rankable items; the blend weights are tuned per query set
(e.g. per cold-user step) by coordinate ascent on validation data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.evaluation.baselines import (
    EASE,
    DemographicPopularity,
    Embedder,
    ItemKNN,
    Model,
    TfIdf,
    keep_top,
    user_vectors,
)
from llmrec.evaluation.tasks import Metric, Queries, TrainData, objective_value
from llmrec.training.ranker import ascend

SIGNALS = ("ease", "itemknn", "bridge", "content_knn", "semantic", "tfidf", "popularity", "demographic", "period_popularity")
PERIOD_PAD_DAYS = 3


def _zscore(scores: np.ndarray, candidates: np.ndarray | None) -> np.ndarray:
    columns = scores if candidates is None else scores[:, candidates]
    mean, std = columns.mean(axis=1, keepdims=True), columns.std(axis=1, keepdims=True)
    return np.where(std > 1e-9, (scores - mean) / np.maximum(std, 1e-9), 0.0).astype(np.float32)


def _ridge(features: np.ndarray, target: np.ndarray, alpha: float = 10.0) -> np.ndarray:
    gram = features.T @ features + alpha * np.eye(features.shape[1])
    return np.linalg.solve(gram, features.T @ target)


class Hybrid(Model):
    """`llmrec-<encoder>`: the pipeline's signals over one encoder (zero-shot or fine-tuned)."""

    def __init__(self, name: str, embedder: Embedder, neighbours: int = 50, **params: Any) -> None:
        super().__init__(**params)
        self.name = name
        self.embedder = embedder
        self.neighbours = neighbours
        self.blend_weights: dict[str, dict[str, float]] = {}

    def tune(self, train: TrainData, valid: list[Queries], objective: Metric) -> float:
        """ItemKNN's neighbours and EASE's L2 first (the L2 judged by EASE alone or through the bridge,
        whichever is better: on cold items EASE alone scores nothing), then each query set's weights."""
        knn = ItemKNN()
        knn.tune(train, valid, objective)
        self.params = {"l2": 400.0, "neighbours": knn.params["neighbours"]}
        self.fit(train)
        best: tuple[float, float] | None = None
        for params in EASE.grid:
            self.ease = EASE(**params).fit(train)
            value = np.mean([max(single_signal_value(self.signals(q, {"ease", "bridge"}), q, objective).values()) for q in valid])
            if best is None or value > best[0]:
                best = (value, params["l2"])
        self.params["l2"] = best[1]
        self.ease = EASE(l2=best[1]).fit(train)
        values = []
        for queries in valid:
            signals = self.signals(queries)
            self.blend_weights[queries.name], value = coordinate_ascent(signals, queries, objective)
            values.append(value)
        return float(np.mean(values))

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        self.ease = EASE(l2=self.params.get("l2", 500.0)).fit(data)
        self.knn = ItemKNN(neighbours=self.params.get("neighbours", 100)).fit(data)
        self.tfidf = TfIdf().fit(data)
        self.vectors = self.embedder.items(data.items)
        counts = np.asarray(data.matrix.sum(axis=0)).ravel()
        warm = counts > 0
        similarity = self.vectors @ self.vectors[warm].T
        similarity[warm] = np.where(np.eye(int(warm.sum()), dtype=bool), 0.0, similarity[warm])
        neighbours = keep_top(np.maximum(similarity.T, 0.0), self.neighbours)  # warm sources x all items
        self.bridge = np.zeros((len(counts), len(counts)), np.float32)
        self.bridge[warm] = neighbours / np.maximum(neighbours.sum(axis=0, keepdims=True), 1e-9)
        self.popularity = self._popularity(data, counts, warm)
        self.demographic = DemographicPopularity().fit(data)
        self.daily = self._daily_counts(data)
        return self

    def _daily_counts(self, data: TrainData) -> tuple[float, np.ndarray] | None:
        """(first day, items x days cumulative interaction counts with a leading zero column)."""
        if data.days is None or not data.days.nnz:
            return None
        days = data.days.tocoo()
        first = np.floor(days.data.min())
        day = (days.data - first).astype(int)
        counts = np.zeros((data.matrix.shape[1], day.max() + 1), np.float32)
        np.add.at(counts, (days.col, day), 1.0)
        return first, np.hstack([np.zeros((len(counts), 1), np.float32), np.cumsum(counts, axis=1)])

    def _period_popularity(self, queries: Queries) -> np.ndarray:
        scores = np.zeros((len(queries.user_ids), len(self.popularity)), np.float32)
        if self.daily is None or queries.history_days is None:
            return scores
        first, cumulative = self.daily
        days = queries.history_days.tocsr()
        for row in range(days.shape[0]):
            seen = days.data[days.indptr[row] : days.indptr[row + 1]]
            if len(seen):
                low = int(np.clip(np.floor(seen.min() - first) - PERIOD_PAD_DAYS, 0, cumulative.shape[1] - 1))
                high = int(np.clip(np.floor(seen.max() - first) + PERIOD_PAD_DAYS + 1, 0, cumulative.shape[1] - 1))
                scores[row] = np.log1p(cumulative[:, high] - cumulative[:, low])
        return scores

    def _popularity(self, data: TrainData, counts: np.ndarray, warm: np.ndarray) -> np.ndarray:
        """log(1 + count), and for items never interacted with, the ridge prediction from content."""
        vocabulary = sorted({t for tokens in data.items.tokens for t in tokens})
        column = {t: i for i, t in enumerate(vocabulary)}
        onehot = np.zeros((len(counts), len(vocabulary)), np.float32)
        for row, tokens in enumerate(data.items.tokens):
            onehot[row, [column[t] for t in tokens]] = 1.0
        features = np.hstack([self.vectors, onehot, np.ones((len(counts), 1), np.float32)])
        log_counts = np.log1p(counts)
        coefficients = _ridge(features[warm], log_counts[warm])
        return np.where(warm, log_counts, features @ coefficients).astype(np.float32)

    def signals(self, queries: Queries, only: set[str] | None = None) -> dict[str, np.ndarray]:
        """Every signal (or those in `only`), z-scored per user over the rankable items."""
        wanted = set(SIGNALS) if only is None else only
        ease = self.ease.score(queries) if wanted & {"ease", "bridge"} else None
        raw = {}
        if "ease" in wanted:
            raw["ease"] = ease
        if "itemknn" in wanted:
            raw["itemknn"] = self.knn.score(queries)
        if "bridge" in wanted:
            raw["bridge"] = np.maximum(ease, 0.0) @ self.bridge
        if "content_knn" in wanted:
            raw["content_knn"] = np.asarray(queries.history @ self.bridge)
        if "semantic" in wanted:
            raw["semantic"] = user_vectors(queries, self.vectors, self.embedder) @ self.vectors.T
        if "tfidf" in wanted:
            raw["tfidf"] = self.tfidf.score(queries)
        if "popularity" in wanted:
            raw["popularity"] = np.tile(self.popularity, (len(queries.user_ids), 1))
        if "demographic" in wanted:
            raw["demographic"] = self.demographic.score(queries)
        if "period_popularity" in wanted:
            raw["period_popularity"] = self._period_popularity(queries)
        return {name: _zscore(values, queries.candidates) for name, values in raw.items()}

    def score(self, queries: Queries) -> np.ndarray:
        weights = self.blend_weights.get(queries.name) or {"ease": 1.0, "semantic": 0.5, "popularity": 0.15}
        return blend(self.signals(queries), weights)


def blend(signals: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = np.zeros_like(next(iter(signals.values())))
    for name, weight in weights.items():
        if weight:
            total += weight * signals[name]
    return total


def coordinate_ascent(signals: dict[str, np.ndarray], queries: Queries, objective: Metric) -> tuple[dict[str, float], float]:
    """Blend weights that maximise the validation objective (the served blend's `ascend`)."""
    return ascend(list(signals), lambda weights: objective_value(blend(signals, weights), queries, objective))


def single_signal_value(signals: dict[str, np.ndarray], queries: Queries, objective: Metric) -> dict[str, float]:
    return {name: objective_value(values, queries, objective) for name, values in signals.items()}
