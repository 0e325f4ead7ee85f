"""Training objectives."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def contrastive_loss(users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None, scale: float = 20.0) -> torch.Tensor:
    """InfoNCE over unit vectors: user i must score its positive i above every other positive of
    the batch (in-batch negatives) and every mined hard negative. `scale` is the inverse
    temperature (20, as sentence-transformers' MultipleNegativesRankingLoss)."""
    candidates = positives if negatives is None else torch.cat([positives, negatives])
    scores = scale * users @ candidates.T
    return F.cross_entropy(scores, torch.arange(len(users), device=scores.device))


def pointwise_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on (text_a, text_b) relevance logits."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
