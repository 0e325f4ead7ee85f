"""Validation during and after training: retrieval Recall/NDCG on cold items, reranker AUC.

`retrieval_metrics` takes plain vectors, so the same function scores the model being trained, the
exported directory in the serving Encoder and the zero-shot packaged encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from llmrec.evaluation.metrics import auc, ndcg_at_k, recall_at_k
from llmrec.training.model import tokenize


def retrieval_metrics(user_vectors: np.ndarray, item_vectors: np.ndarray, validation: Any, k: int = 20) -> dict[str, float]:
    """Rank every candidate item for every validation user by inner product."""
    scores = user_vectors @ item_vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    recommended = {u: [validation.item_ids[j] for j in row] for u, row in zip(validation.user_ids, top.tolist())}
    relevant = {u: set(r) for u, r in zip(validation.user_ids, validation.relevant)}
    return {f"recall@{k}": recall_at_k(recommended, relevant, k), f"ndcg@{k}": ndcg_at_k(recommended, relevant, k)}


@torch.no_grad()
def embed_texts(model, tokenizer, texts: Sequence[str], device, max_length: int, batch_size: int = 128) -> np.ndarray:
    """Unit vectors from a BiEncoder (unwrapped), in eval mode, as float32 numpy."""
    was_training = model.training
    model.eval()
    out = [model.embed(tokenize(tokenizer, texts[s : s + batch_size], max_length, device)).cpu().numpy() for s in range(0, len(texts), batch_size)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


@torch.no_grad()
def cross_scores(model, tokenizer, text_a: Sequence[str], text_b: Sequence[str], device, max_length: int, batch_size: int = 128) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = [
        model(tokenize(tokenizer, text_a[s : s + batch_size], max_length, device, pair=text_b[s : s + batch_size])).cpu().numpy()
        for s in range(0, len(text_a), batch_size)
    ]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def validate(task: str, model, tokenizer, validation: Any, device, max_length: int, k: int = 20) -> dict[str, float]:
    """The per-epoch validation metric: encoder → recall@k, ndcg@k on cold items; reranker → AUC
    on labelled validation pairs (a dict of lists text_a, text_b, label)."""
    if task == "encoder":
        users = embed_texts(model, tokenizer, validation.user_texts, device, max_length)
        items = embed_texts(model, tokenizer, validation.item_texts, device, max_length)
        return {f"val_{name}": value for name, value in retrieval_metrics(users, items, validation, k).items()}
    scores = cross_scores(model, tokenizer, validation["text_a"], validation["text_b"], device, max_length)
    return {"val_auc": auc(np.asarray(validation["label"]) > 0.5, scores)}
