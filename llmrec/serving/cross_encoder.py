"""A trained cross-encoder as a reranking signal (the artifact of `llmrec train reranker`).

It scores (request or user text, item text) pairs jointly, which a two-tower encoder cannot, at a
cost per pair: so it only rescores the head of the first-stage ranking (`rescore_head`), where
`blend` mixes its min-max scaled scores into the first-stage score: it adds to the semantic,
collaborative and popularity signals rather than replacing them. Serving (`blend.Blend`) and
the offline evaluation (`evaluation.cross`) both go through `rescore_head`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _minmax(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min() if len(values) else 0.0
    return (values - values.min()) / span if span > 1e-12 else np.zeros_like(values, dtype=np.float64)


class CrossReranker:
    """Loads a reranker directory (a one-output sequence-classification model) for scoring."""

    def __init__(self, directory: str, device: str = "cpu", max_length: int = 128, batch_size: int = 64) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(str(directory), device=device, max_length=max_length)
        self.batch_size = batch_size
        self.model_id = str(directory)

    def scores(self, text: str, item_texts: Sequence[str]) -> np.ndarray:
        """Relevance of each item to the text, in (0, 1) (sigmoid of the logit)."""
        if not item_texts:
            return np.zeros(0)
        pairs = [(text, item) for item in item_texts]
        return np.asarray(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), dtype=np.float64)


def blend(first_stage: np.ndarray, cross: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """(1 - weight) * scaled first-stage score + weight * scaled cross-encoder score."""
    if len(first_stage) != len(cross):
        raise ValueError(f"blend got {len(first_stage)} first-stage scores but {len(cross)} cross-encoder scores")
    return (1.0 - weight) * _minmax(np.asarray(first_stage, dtype=np.float64)) + weight * _minmax(np.asarray(cross, dtype=np.float64))


def rescore_head(scores: np.ndarray, cross: Callable[[np.ndarray], np.ndarray], weight: float, size: int) -> np.ndarray:
    """The first-stage `scores` with their best `size` entries reordered by `blend` with the
    cross-encoder (`cross(positions)` scores those entries) and mapped back into the head's own score
    range, so the head stays above the tail and the scores keep their scale."""
    scores = np.asarray(scores, dtype=np.float64)
    head = np.argsort(-scores, kind="stable")[:size]
    head = head[np.isfinite(scores[head])]  # what may not be ranked (-inf) is never in the head
    if weight <= 0.0 or len(head) < 2:
        return scores.copy()
    low, high = scores[head].min(), scores[head].max()
    mixed = blend(scores[head], np.asarray(cross(head), dtype=np.float64), weight)
    out = scores.copy()
    out[head] = low + _minmax(mixed) * max(high - low, 1e-6)  # tied heads still get their new order
    return out
