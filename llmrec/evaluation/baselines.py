"""Baseline rankers: random, popularity, ItemKNN, EASE, BPR, TF-IDF and a sentence encoder.

Each is small, numpy/scipy/torch only, and answers one question: what does `llmrec` have to beat?
A model is fitted on `TrainData` and scores every item for each query user; `grid` lists the
hyper-parameters the protocol tries on its validation data (never on test).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec.config import EncoderConfig, llmrec_home
from llmrec.data.text import render_user
from llmrec.evaluation.tasks import Items, Metric, Queries, TrainData, objective_value
from llmrec.serving.collaborative import ItemItemModel


class Model:
    """Fit on training data, then score all items (columns) for each query (rows)."""

    name = "model"
    grid: ClassVar[list[dict[str, Any]]] = [{}]

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, data: TrainData) -> Model:
        self.data = data
        return self

    def score(self, queries: Queries) -> np.ndarray:
        raise NotImplementedError

    def tune(self, train: TrainData, valid: list[Queries], objective: Metric) -> float:
        """Keep the grid point with the best mean validation objective; returns that value."""
        best: tuple[float, dict[str, Any]] | None = None
        for params in self.grid:
            self.params = dict(params)
            value = validation_score(self.fit(train), valid, objective)
            if best is None or value > best[0]:
                best = (value, self.params)
        self.params = best[1]
        return best[0]


def validation_score(model: Model, valid: list[Queries], objective: Metric) -> float:
    """Mean of the objective over the validation query sets."""
    return float(np.mean([objective_value(model.score(q), q, objective) for q in valid]))


class Random(Model):
    name = "random"

    def score(self, queries: Queries) -> np.ndarray:
        rng = np.random.default_rng(42)
        return rng.random((len(queries.user_ids), len(self.data.items.ids)), dtype=np.float32)


class Popularity(Model):
    name = "popularity"

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        self.counts = np.asarray(data.matrix.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, queries: Queries) -> np.ndarray:
        return np.tile(self.counts, (len(queries.user_ids), 1))


class DemographicPopularity(Model):
    """Popularity among users who share the profile: the sum over the profile's values of
    log P(item | value) over training users, add-one smoothed."""

    name = "demographic"

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        self.rates: dict[tuple[str, str], np.ndarray] = {}
        keys = {(k, str(v)) for profile in data.profiles for k, v in profile.items()}
        for key, value in keys:
            rows = [i for i, p in enumerate(data.profiles) if str(p.get(key)) == value]
            counts = np.asarray(data.matrix[rows].sum(axis=0)).ravel()
            self.rates[(key, value)] = np.log((counts + 1.0) / (len(rows) + 2.0)).astype(np.float32)
        return self

    def score(self, queries: Queries) -> np.ndarray:
        scores = np.zeros((len(queries.user_ids), len(self.data.items.ids)), np.float32)
        for row, profile in enumerate(queries.profiles):
            for key, value in profile.items():
                scores[row] += self.rates.get((key, str(value)), 0.0)
        return scores


class ItemKNN(Model):
    """Item-based kNN: cosine between item columns, each item keeping its `neighbours` closest."""

    name = "itemknn"
    grid: ClassVar[list[dict[str, Any]]] = [{"neighbours": n} for n in (20, 50, 100, 200)]

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        x = data.matrix
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        scaled = x @ sp.diags(1.0 / np.maximum(norms, 1e-12))
        cosine = (scaled.T @ scaled).toarray()
        np.fill_diagonal(cosine, 0.0)
        self.weights = keep_top(cosine, self.params.get("neighbours", 100))
        return self

    def score(self, queries: Queries) -> np.ndarray:
        return np.asarray(queries.history @ self.weights, dtype=np.float32)


def keep_top(similarity: np.ndarray, n: int) -> np.ndarray:
    """Zero all but the n largest entries of each column (each item keeps its n nearest sources)."""
    if n >= similarity.shape[0]:
        return similarity
    cut = np.partition(similarity, -n, axis=0)[-n]
    return np.where(similarity >= cut, similarity, 0.0).astype(np.float32)


class EASE(Model):
    """Steck's EASE through `llmrec.serving.collaborative.ItemItemModel` (the pipeline's own collaborative model),
    its item-item matrix laid over the protocol's columns (items never interacted with stay 0)."""

    name = "ease"
    grid: ClassVar[list[dict[str, Any]]] = [{"l2": l2} for l2 in (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)]

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        rows, cols = data.matrix.nonzero()
        pairs = pd.DataFrame({"user_id": rows, "item_id": cols})
        n_items = data.matrix.shape[1]
        model = ItemItemModel.fit(pairs, l2=self.params.get("l2", 500.0), max_dense_items=n_items)
        self.weights = np.zeros((n_items, n_items), np.float32)
        if model is not None:
            known = np.array(model.item_ids)
            self.weights[np.ix_(known, known)] = model.weights
        return self

    def score(self, queries: Queries) -> np.ndarray:
        return np.asarray(queries.history @ self.weights, dtype=np.float32)


class BPR(Model):
    """Bayesian personalised ranking matrix factorisation (Rendle et al., 2009) in torch, with item
    biases. A query user is folded in as the mean factor of their history (no per-user training),
    so the same model serves warm and cold users."""

    name = "bpr"
    grid: ClassVar[list[dict[str, Any]]] = [{"dim": 64, "epochs": 30, "reg": reg} for reg in (1e-4, 1e-3)]

    def fit(self, data: TrainData) -> Model:
        import torch

        super().fit(data)
        generator = torch.Generator().manual_seed(42)
        torch.manual_seed(42)
        x = data.matrix.tocoo()
        users, items = torch.as_tensor(x.row, dtype=torch.long), torch.as_tensor(x.col, dtype=torch.long)
        n_users, n_items = data.matrix.shape
        dim, reg = self.params.get("dim", 64), self.params.get("reg", 1e-4)
        user_f = torch.nn.Parameter(0.1 * torch.randn(n_users, dim, generator=generator))
        item_f = torch.nn.Parameter(0.1 * torch.randn(n_items, dim, generator=generator))
        item_b = torch.nn.Parameter(torch.zeros(n_items))
        optimiser = torch.optim.Adam([user_f, item_f, item_b], lr=0.01)
        for _ in range(self.params.get("epochs", 30)):
            order = torch.randperm(len(users), generator=generator)
            negatives = torch.randint(n_items, (len(users),), generator=generator)
            for batch in order.split(4096):
                u, i, j = users[batch], items[batch], negatives[batch]  # a sampled "negative" is rarely a positive
                diff = (user_f[u] * (item_f[i] - item_f[j])).sum(1) + item_b[i] - item_b[j]
                penalty = reg * (user_f[u].pow(2).sum() + item_f[i].pow(2).sum() + item_f[j].pow(2).sum())
                loss = -torch.nn.functional.logsigmoid(diff).sum() + penalty
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self.item_factors = item_f.detach().numpy()
        self.item_bias = item_b.detach().numpy()
        return self

    def score(self, queries: Queries) -> np.ndarray:
        counts = np.maximum(np.asarray(queries.history.sum(axis=1)), 1.0)
        users = np.asarray(queries.history @ self.item_factors) / counts
        return (users @ self.item_factors.T + self.item_bias).astype(np.float32)


def profile_text(profile: dict[str, Any]) -> str:
    return render_user(profile=profile) if profile else ""


class TfIdf(Model):
    """Content similarity: TF-IDF of each item's rendered text (words and attribute tokens); a user
    is the normalised sum of their history's item vectors, or their profile as text without one."""

    name = "tfidf"

    def fit(self, data: TrainData) -> Model:
        from sklearn.feature_extraction.text import TfidfVectorizer

        super().fit(data)
        documents = [f"{text} {' '.join(t.replace(' ', '_') for t in tokens)}" for text, tokens in zip(data.items.texts, data.items.tokens)]
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=r"[^\s.,;:()]+")
        self.vectors = self.vectorizer.fit_transform(documents).astype(np.float32).tocsr()
        return self

    def score(self, queries: Queries) -> np.ndarray:
        users = sp.csr_matrix(queries.history @ self.vectors)
        empty = np.flatnonzero(np.asarray(queries.history.sum(axis=1)).ravel() == 0)
        if len(empty):
            texts = self.vectorizer.transform([profile_text(queries.profiles[i]) for i in empty])
            users = sp.vstack([users, texts]).tocsr()[_row_order(users.shape[0], empty)]
        norms = np.sqrt(np.asarray(users.multiply(users).sum(axis=1))).ravel()
        users = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ users
        return np.asarray((users @ self.vectors.T).toarray(), dtype=np.float32)


def _row_order(n: int, replaced: np.ndarray) -> np.ndarray:
    """Row picks from [original rows; replacement rows] that put replacement i at row replaced[i]."""
    order = np.arange(n)
    order[replaced] = n + np.arange(len(replaced))
    return order


def encoder_spec_key(spec: str) -> str:
    """A cache key for an encoder spec: a local directory also keys on its newest file time, so a
    re-trained model in the same directory is embedded again."""
    path = Path(spec).expanduser()
    if path.is_dir():
        newest = max((p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()), default=0)
        return f"{path.resolve()}@{newest}"
    return spec


class Embedder:
    """One encoder, loaded on first use, plus an on-disk cache of what it embedded
    (LLMREC_HOME/cache/eval, keyed on the encoder and the exact texts): a protocol embeds its
    catalog once, and every model and every later run reusing the encoder reads the same vectors."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            from llmrec.serving.encoder import Encoder

            self._encoder = Encoder(EncoderConfig(model=self.spec))
        return self._encoder

    def items(self, items: Items) -> np.ndarray:
        return self.texts(items.texts)

    def texts(self, texts: list[str]) -> np.ndarray:
        digest = hashlib.sha256(encoder_spec_key(self.spec).encode())
        for text in texts:
            digest.update(text.encode() + b"\0")
        path = llmrec_home() / "cache" / "eval" / f"{digest.hexdigest()[:24]}.npy"
        if path.is_file():
            return np.load(path)
        vectors = self.encoder.encode(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors


def user_vectors(queries: Queries, item_vectors: np.ndarray, embedder: Embedder) -> np.ndarray:
    """Unit user vectors: the mean of the history's item vectors, or the profile as text without one."""
    users = np.asarray(queries.history @ item_vectors, dtype=np.float32)
    empty = np.flatnonzero(np.asarray(queries.history.sum(axis=1)).ravel() == 0)
    if len(empty):
        users[empty] = embedder.texts([profile_text(queries.profiles[i]) for i in empty])
    return users / np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-12)


class EncoderRanker(Model):
    """Zero-shot semantic retrieval, as the pipeline's FAISS stage does it: cosine between the
    user vector and each item's embedded text."""

    def __init__(self, name: str, embedder: Embedder, **params: Any) -> None:
        super().__init__(**params)
        self.name = name
        self.embedder = embedder

    def fit(self, data: TrainData) -> Model:
        super().fit(data)
        self.vectors = self.embedder.items(data.items)
        return self

    def score(self, queries: Queries) -> np.ndarray:
        return user_vectors(queries, self.vectors, self.embedder) @ self.vectors.T
