"""`ml1m-scenes`: the Scenario-Wise Rec MovieLens split, and the pointwise reranker it compares.

Scenes are user age groups (MovieLens codes {1, 18}, {25}, {35, 45, 50, 56}); a rating above 3 is
a positive; the rows are split 80/10/10 at random (seed 42). The reranker is a logistic model over
one-hot features (user, item, gender x genre, occupation x genre). Three ways to use the scenes:

* `shared`: one model on every scene, scene-aware (scene, scene x item and scene x genre features
  on top of the shared ones): every scene learns from all data, and from its own;
* `per-scene`: one model per scene, trained on that scene's rows alone;
* `blind`: one model on every scene without any scene feature.

`llmrec` is the shared scene-aware model, the one the pipeline would serve.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec.data.catalog import Catalog, load_catalog
from llmrec.errors import LLMRecError
from llmrec.evaluation import metrics
from llmrec.evaluation.runner import Run

SCENES = {"under-25": ("under 18", "18-24"), "25-34": ("25-34",), "35+": ("35-44", "45-49", "50-55", "56+")}
SCENE_MODELS = ("random", "popularity", "blind", "per-scene", "shared", "llmrec")
C_GRID = (0.1, 0.3, 1.0)


@dataclass
class SceneSplit:
    """Rows with `label` (rating > 3) and `scene`, and the catalog the feature vocabularies come from."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    catalog: Catalog


def ml1m_scenes_split(max_rows: int | None = None, catalog: Catalog | None = None) -> SceneSplit:
    """Scenes by age group, label rating > 3, random 80/10/10 (seed 42). `max_rows` keeps a random
    subset first (the reduced CI version)."""
    catalog = catalog or load_catalog("movielens-1m")
    ages = {u: json.loads(a).get("age") for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}
    scene_of_age = {age: scene for scene, group in SCENES.items() for age in group}
    rows = catalog.interactions.assign(
        label=(catalog.interactions["rating"] > 3).astype(np.int8),
        scene=catalog.interactions["user_id"].map(ages).map(scene_of_age),
    )
    rows = rows.sample(frac=1.0, random_state=42).reset_index(drop=True)
    if max_rows is not None:
        rows = rows.iloc[:max_rows]
    n_train, n_valid = int(len(rows) * 0.8), int(len(rows) * 0.1)
    return SceneSplit(rows.iloc[:n_train], rows.iloc[n_train : n_train + n_valid], rows.iloc[n_train + n_valid :], catalog)


class Features:
    """One-hot feature matrices over fixed vocabularies (every catalog user, item, genre and scene)."""

    def __init__(self, catalog: Catalog) -> None:
        self.users = pd.Index(catalog.users["user_id"])
        self.items = pd.Index(catalog.items["item_id"])
        self.scenes = pd.Index(list(SCENES))
        profiles = [json.loads(a) for a in catalog.users["attributes"]]
        self.gender, _ = pd.factorize(pd.Series([p.get("gender", "") for p in profiles]))
        self.occupation, _ = pd.factorize(pd.Series([p.get("occupation", "") for p in profiles]))
        genres = [json.loads(a).get("genres", []) for a in catalog.items["attributes"]]
        vocabulary = sorted({g for gs in genres for g in gs})
        rows = [i for i, gs in enumerate(genres) for _ in gs]
        cols = [vocabulary.index(g) for gs in genres for g in gs]
        self.genres = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(genres), len(vocabulary)))

    def matrix(self, frame: pd.DataFrame, scene_aware: bool) -> sp.csr_matrix:
        user = self.users.get_indexer(frame["user_id"])
        item = self.items.get_indexer(frame["item_id"])
        genres = self.genres[item]
        blocks = [
            _onehot(user, len(self.users)),
            _onehot(item, len(self.items)),
            _cross(self.gender[user], self.gender.max() + 1, genres),
            _cross(self.occupation[user], self.occupation.max() + 1, genres),
        ]
        if scene_aware:
            scene = self.scenes.get_indexer(frame["scene"])
            blocks += [
                _onehot(scene, len(self.scenes)),
                _onehot(scene * len(self.items) + item, len(self.scenes) * len(self.items)),
                _cross(scene, len(self.scenes), genres),
            ]
        return sp.hstack(blocks, format="csr")


def _onehot(codes: np.ndarray, size: int) -> sp.csr_matrix:
    n = len(codes)
    return sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), codes)), shape=(n, size))


def _cross(codes: np.ndarray, size: int, multi: sp.csr_matrix) -> sp.csr_matrix:
    """Row r: the multi-hot row r of `multi` moved into block codes[r] of `size` blocks."""
    width = multi.shape[1]
    counts = np.diff(multi.indptr)
    columns = multi.indices + np.repeat(codes, counts) * width
    return sp.csr_matrix((multi.data, columns, multi.indptr), shape=(multi.shape[0], size * width))


def _logistic(x: sp.csr_matrix, y: np.ndarray, x_valid: sp.csr_matrix, y_valid: np.ndarray):
    """Logistic regression with the L2 strength (C) that gives the best validation AUC."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=300).fit(x, y)
        value = metrics.auc(y_valid, model.predict_proba(x_valid)[:, 1])
        if best is None or value > best[0]:
            best = (value, c, model)
    return best


def predict(name: str, split: SceneSplit, features: Features) -> tuple[np.ndarray, dict]:
    """Test probabilities of one model, and what its tuning chose."""
    train, valid, test = split.train, split.valid, split.test
    if name == "random":
        return np.random.default_rng(42).random(len(test)), {}
    if name == "popularity":  # each item's positive rate in training, smoothed toward the global rate
        prior = train["label"].mean()
        stats = train.groupby("item_id")["label"].agg(["sum", "count"])
        rate = (stats["sum"] + 10 * prior) / (stats["count"] + 10)
        return test["item_id"].map(rate).fillna(prior).to_numpy(), {}
    if name in ("blind", "shared", "llmrec"):
        aware = name != "blind"
        value, c, model = _logistic(
            features.matrix(train, aware), train["label"].to_numpy(), features.matrix(valid, aware), valid["label"].to_numpy()
        )
        return model.predict_proba(features.matrix(test, aware))[:, 1], {"C": c, "validation auc": round(value, 4)}
    out, chosen = np.zeros(len(test)), {}  # per-scene (run_scenes checked the name)
    for scene in SCENES:
        tr, va, te = (f[f["scene"] == scene] for f in (train, valid, test))
        value, c, model = _logistic(
            features.matrix(tr, False), tr["label"].to_numpy(), features.matrix(va, False), va["label"].to_numpy()
        )
        out[(test["scene"] == scene).to_numpy()] = model.predict_proba(features.matrix(te, False))[:, 1]
        chosen[scene] = {"C": c, "validation auc": round(value, 4)}
    return out, chosen


def scene_metrics(test: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """AUC and logloss overall and per scene; per scene also NDCG@10 of each user's test rows ranked
    by score (positives relevant; users without a positive test row are left out, as MSR does)."""
    labels = test["label"].to_numpy()
    out = {"auc": metrics.auc(labels, scores), "logloss": metrics.logloss(labels, scores)}
    for scene in SCENES:
        mask = (test["scene"] == scene).to_numpy()
        out[f"auc ({scene})"] = metrics.auc(labels[mask], scores[mask])
        out[f"logloss ({scene})"] = metrics.logloss(labels[mask], scores[mask])
        ranked, relevant = _user_rankings(test[mask], scores[mask])
        out[f"ndcg@10 ({scene})"] = metrics.ndcg_at_k(ranked, relevant, 10)
    return out


def _by_user(rows: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """The rows with their scores, each user's best first."""
    return rows.assign(score=scores).sort_values(["user_id", "score"], ascending=[True, False], kind="stable")


def _user_rankings(rows: pd.DataFrame, scores: np.ndarray) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    ordered = _by_user(rows, scores)
    ranked = ordered.groupby("user_id")["item_id"].agg(list).to_dict()
    relevant = ordered[ordered["label"] == 1].groupby("user_id")["item_id"].agg(set).to_dict()
    return ranked, relevant


def run_scenes(names: list[str], max_rows: int | None = None, catalog: Catalog | None = None) -> Run:
    """Every named model on the ml1m-scenes split; predictions are each user's test rows ranked."""
    unknown = [n for n in names if n not in SCENE_MODELS]
    if unknown:
        raise LLMRecError(f"unknown model {unknown[0]!r} for ml1m-scenes; choose from {', '.join(SCENE_MODELS)}")
    split = ml1m_scenes_split(max_rows, catalog)
    features = Features(split.catalog)
    run = Run("ml1m-scenes")
    for name in names:
        started = time.perf_counter()
        scores, chosen = predict(name, split, features)
        run.results[name] = scene_metrics(split.test, scores)
        run.details[name] = {"params": chosen, "seconds": round(time.perf_counter() - started, 1)}
        ordered = _by_user(split.test, scores)
        ranks = ordered.groupby("user_id").cumcount() + 1
        run.predictions += [
            (name, u, i, int(r), float(s)) for u, i, r, s in zip(ordered["user_id"], ordered["item_id"], ranks, ordered["score"])
        ]
    return run
