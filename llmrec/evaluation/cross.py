"""`llmrec-rerank`: the pipeline's blend with its head rescored by a trained cross-encoder.

This is what serving does when `rerank.cross_encoder` is set: `cross_encoder.rescore_head` over the
blend's best `head` rankable items, the user as the recommender renders them (`Queries.texts`),
the items as their rendered text. The cross-encoder's weight is chosen on validation from
WEIGHTS; 0 is among them, so on validation it is never worse than the blend it starts from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.evaluation.baselines import Model
from llmrec.evaluation.tasks import Metric, Queries, TrainData, objective_value
from llmrec.serving.cross_encoder import CrossReranker, rescore_head

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
HEAD = 30  # rerank.cross_candidates' default


class CrossReranked(Model):
    def __init__(self, name: str, first: Model, reranker: CrossReranker, head: int = HEAD, **params: Any) -> None:
        super().__init__(weight=0.5, head=head, first=first.name, **params)
        self.name = name
        self.first = first
        self.reranker = reranker
        self.pairs_scored = 0

    @property
    def blend_weights(self) -> dict[str, dict[str, float]] | None:
        return getattr(self.first, "blend_weights", None)

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        if getattr(self.first, "data", None) is not data:
            self.first.fit(data)
        return self

    def _first_scores(self, queries: Queries) -> np.ndarray:
        """The first stage's scores with what may not be ranked (history, non-candidates) at -inf."""
        scores = np.array(self.first.score(queries), dtype=np.float64)
        rows, cols = queries.history.nonzero()
        scores[rows, cols] = -np.inf
        if queries.candidates is not None:
            scores[:, ~queries.candidates] = -np.inf
        return scores

    def _rescored(self, queries: Queries, first: np.ndarray, weight: float, memo: dict[tuple[int, int], float]) -> np.ndarray:
        if queries.texts is None:
            raise ValueError(f"query set {queries.name!r} has no user texts for the cross-encoder")
        texts = self.data.items.texts
        out = np.empty_like(first)
        for row in range(len(first)):
            def cross(head: np.ndarray, row: int = row) -> np.ndarray:
                missing = [int(j) for j in head if (row, int(j)) not in memo]
                if missing:
                    found = self.reranker.scores(queries.texts[row], [texts[j] for j in missing])
                    memo.update({(row, j): float(v) for j, v in zip(missing, found)})
                    self.pairs_scored += len(missing)
                return np.array([memo[(row, int(j))] for j in head])

            out[row] = rescore_head(first[row], cross, weight, self.params["head"])
        return out

    def tune(self, train: TrainData, valid: list[Queries], objective: Metric) -> float:
        """The first stage as given (already tuned), then the cross-encoder's weight on validation."""
        self.fit(train)
        prepared = [(q, self._first_scores(q), {}) for q in valid]
        values = {
            weight: float(np.mean([objective_value(self._rescored(q, first, weight, memo), q, objective) for q, first, memo in prepared]))
            for weight in WEIGHTS
        }
        self.params["weight"] = max(values, key=values.get)
        self.params["validation_by_weight"] = {str(w): round(v, 4) for w, v in values.items()}
        return values[self.params["weight"]]

    def score(self, queries: Queries) -> np.ndarray:
        return self._rescored(queries, self._first_scores(queries), self.params["weight"], {})
