"""The two-tower text encoder and the cross-encoder, as plain torch modules over transformers.

The two towers share one set of weights (serving embeds users and items with the same Encoder).
The encoder is the sentence-transformers MiniLM pipeline (transformer → mean pooling → L2
normalisation) written out, so that the trained weights drop back into that pipeline unchanged.
The backbone is loaded without BERT's pooling layer: mean pooling never reads it, and under DDP an
unused parameter breaks the gradient reduction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def tokenize(tokenizer, texts: Sequence[str], max_length: int, device: torch.device | str, pair: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(texts), list(pair) if pair is not None else None, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class BiEncoder(nn.Module):
    """Shared-weight towers: `forward` embeds several tokenised groups (users, positives,
    negatives) in ONE call, so DDP sees one forward per backward."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from transformers import AutoModel

        self.backbone = AutoModel.from_pretrained(path, add_pooling_layer=False)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.backbone(**batch).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]).float(), dim=-1)

    def forward(self, *groups: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [self.embed(group) for group in groups]


class CrossScorer(nn.Module):
    """(text_a, text_b) → one relevance logit: BERT with a fresh one-unit classification head."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**batch).logits.squeeze(-1).float()


def build_model(task: str, path: str) -> nn.Module:
    if task == "encoder":
        return BiEncoder(path)
    if task == "reranker":
        return CrossScorer(path)
    raise ValueError(f"unknown task {task!r}: encoder or reranker")
