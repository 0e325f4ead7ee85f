"""The first-stage reranker: blend semantic, collaborative and popularity signals, then diversify.

No training needed: each signal is min-max scaled over the candidate set and mixed with the
configured weights (the collaborative weight only counts when the user has history). A trained
cross-encoder, when configured, then reorders the head of that ranking (`cross_encoder.rescore_head`).
MMR finally trades a little score for variety, using the item vectors the retriever already holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.config import RerankConfig
from llmrec.serving.cross_encoder import _minmax, rescore_head

CrossScores = Callable[[Sequence[str]], np.ndarray]  # item ids → cross-encoder scores for this request


@dataclass
class Candidate:
    """One item with its raw signals and, after ranking, its blended score."""

    item_id: str
    semantic: float = 0.0
    collaborative: float = 0.0
    popularity: float = 0.0
    score: float = 0.0


class Blend:
    def __init__(self, config: RerankConfig | None = None) -> None:
        self.config = config or RerankConfig()

    def blend(self, candidates: list[Candidate], has_text: bool, has_history: bool) -> np.ndarray:
        """The blended score of each candidate, in [0, 1]."""
        weights = {
            "semantic": self.config.semantic_weight if has_text else 0.0,
            "collaborative": self.config.collaborative_weight if has_history else 0.0,
            "popularity": self.config.popularity_weight,
        }
        total = sum(weights.values()) or 1.0
        blended = np.zeros(len(candidates))
        for signal, weight in weights.items():
            if weight:
                raw = np.array([getattr(c, signal) for c in candidates], dtype=np.float64)
                blended += weight * _minmax(raw)
        return blended / total

    def rank(
        self,
        candidates: list[Candidate],
        vectors: np.ndarray,
        k: int,
        has_text: bool,
        has_history: bool,
        cross: CrossScores | None = None,
    ) -> list[Candidate]:
        """Top-k candidates by maximal marginal relevance over the blended score (its head rescored
        with `cross` when given)."""
        if not candidates:
            return []
        scores = self.blend(candidates, has_text, has_history)
        if cross is not None:
            ids = [c.item_id for c in candidates]
            scores = rescore_head(scores, lambda head: cross([ids[i] for i in head]), self.config.cross_weight, self.config.cross_candidates)
        for candidate, score in zip(candidates, scores):
            candidate.score = float(score)
        order = mmr(scores, vectors, k, self.config.mmr_lambda)
        return [candidates[i] for i in order]


def mmr(scores: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Greedy MMR: pick argmax of lam*score - (1-lam)*max similarity to what is already picked."""
    k = min(k, len(scores))
    if len(vectors) != len(scores):
        raise ValueError(f"mmr got {len(scores)} scores but {len(vectors)} vectors")
    if lam >= 1.0:
        return np.argsort(-scores, kind="stable")[:k].tolist()
    chosen: list[int] = []
    closest = np.full(len(scores), -np.inf)
    available = np.ones(len(scores), dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(available, lam * scores - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(value))
        chosen.append(best)
        available[best] = False
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen
