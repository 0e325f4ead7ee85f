"""`ml1m-scenes`: the Scenario-Wise Rec MovieLens split, the served recommender, and baselines.

Scenes are user age groups (MovieLens codes {1, 18}, {25}, {35, 45, 50, 56}); a rating above 3 is
a positive; the rows are split 80/10/10 at random (seed 42).

`llmrec` is the served recommender with each scene as the request's `context`: a `Recommender`
(the in-process form of the Serve app) started on the training rows, its context model
(llmrec/serving/context.py) trained on them with the scenes as contexts, its blend fitted on the
validation users; each test user is one request whose shortlist is their test items. AUC and
logloss read the answer's `like_probability`, NDCG@10 the answer's order.

Baselines: a logistic model over one-hot features (user, item, gender x genre, occupation x genre)
used three ways: `shared`, one scene-aware model on every scene (scene, scene x item and scene x
genre features on top); `per-scene`, one model per scene on that scene's rows alone; `blind`, one
model without any scene feature. `context-per-scene` is the served context model trained per
scene on that scene's rows alone (what sharing across scenes is measured against).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec.data.catalog import Catalog, load_catalog
from llmrec.errors import LLMRecError
from llmrec.evaluation import metrics
from llmrec.evaluation.runner import Run
from llmrec.evaluation.served import served_config
from llmrec.serving.blend import TrainedBlend
from llmrec.serving.context import ContextModel
from llmrec.serving.recommender import Recommender
from llmrec.serving.schemas import RecommendRequest
from llmrec.training.context import catalog_categories, catalog_profiles, fit_context_model
from llmrec.training.ranker import collect, fit_blend

SCENES = {"under-25": ("under 18", "18-24"), "25-34": ("25-34",), "35+": ("35-44", "45-49", "50-55", "56+")}
SCENE_MODELS = ("random", "popularity", "blind", "per-scene", "shared", "context-per-scene", "llmrec")
C_GRID = (0.1, 0.3, 1.0)


@dataclass
class SceneSplit:
    """Rows with `label` (rating > 3) and `scene`, and the catalog the feature vocabularies come from."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    catalog: Catalog


def ml1m_scenes_split(max_users: int | None = None, catalog: Catalog | None = None) -> SceneSplit:
    """Scenes by age group, label rating > 3, random 80/10/10 (seed 42). `max_users` keeps the rows
    of that many users drawn at random first (the reduced CI version)."""
    catalog = catalog or load_catalog("movielens-1m")
    ages = {u: json.loads(a).get("age") for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}
    scene_of_age = {age: scene for scene, group in SCENES.items() for age in group}
    rows = catalog.interactions.assign(
        label=(catalog.interactions["rating"] > 3).astype(np.int8),
        scene=catalog.interactions["user_id"].map(ages).map(scene_of_age),
    )
    if max_users is not None:
        users = np.sort(rows["user_id"].unique())
        kept = np.random.default_rng(42).choice(users, size=min(max_users, len(users)), replace=False)
        rows = rows[rows["user_id"].isin(set(kept))]
    rows = rows.sample(frac=1.0, random_state=42).reset_index(drop=True)
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
    if name == "context-per-scene":
        out, chosen = np.zeros(len(test)), {}
        for scene in SCENES:
            tr, va, te = (f[f["scene"] == scene].assign(context=None) for f in (train, valid, test))
            model = fit_context_model(tr, va, catalog_profiles(split.catalog), catalog_categories(split.catalog))
            out[(test["scene"] == scene).to_numpy()] = _context_scores(model, te, split.catalog)
            chosen[scene] = {"epochs": model.card["epochs"], "validation auc": model.card["validation_auc"]}
        return out, chosen
    if name in ("blind", "shared"):
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


def _context_scores(model: ContextModel, rows: pd.DataFrame, catalog: Catalog) -> np.ndarray:
    """The context model's probability for each row (user, item, context), one user at a time as serving asks."""
    users, categories = catalog_profiles(catalog), catalog_categories(catalog)
    out = pd.Series(0.0, index=rows.index)
    for (user, context), group in rows.groupby(["user_id", "context"], dropna=False, sort=False):
        items = group["item_id"].tolist()
        out[group.index] = model.probabilities(user, users.get(user, {}), items, [categories[i] for i in items], context if isinstance(context, str) else None)
    return out.to_numpy()


def served(split: SceneSplit, k: int = 10) -> tuple[np.ndarray, np.ndarray, dict]:
    """The served recommender's test answers: each row's like probability and its rank score (see the module docstring)."""
    catalog = split.catalog
    scene = catalog.scenes["scene"].tolist()[0]
    columns = ["user_id", "item_id", "rating", "timestamp"]
    train, valid, test = (f.rename(columns={"scene": "context"}) for f in (split.train, split.valid, split.test))
    model = fit_context_model(train, valid, catalog_profiles(catalog), catalog_categories(catalog))
    widest = int(max(valid.groupby("user_id").size().max(), test.groupby("user_id").size().max()))
    with tempfile.TemporaryDirectory(prefix="llmrec-eval-") as state:
        served_catalog = Catalog(f"eval-{catalog.name}-scenes", catalog.scenes, catalog.items, catalog.users, split.train[columns], catalog.kg)
        served_catalog.save(Path(state) / "catalog")
        recommender = Recommender(served_config(Path(state) / "catalog", Path(state), widest, None, None), served_catalog)
        recommender.ranker.blend.trained = TrainedBlend({}, {}, {scene: model})

        def requests(rows: pd.DataFrame, size: int | None) -> tuple[list[RecommendRequest], list[pd.DataFrame]]:
            groups = [g for _, g in rows.groupby("user_id", sort=True)]
            made = [
                RecommendRequest(user_id=g["user_id"].iat[0], scene=scene, context=g["context"].iat[0], k=size or len(g), filters={"item_ids": g["item_id"].tolist()})
                for g in groups
            ]
            return made, groups

        asked, groups = requests(valid, k)
        examples = collect(recommender, asked, [set(g.loc[g["label"] == 1, "item_id"]) for g in groups])
        trained = fit_blend(examples, k, {"tuned_on": "ml1m-scenes validation"})
        trained.contexts = {scene: model}
        recommender.ranker.blend.trained = trained
        probability, order = pd.Series(np.nan, index=test.index), pd.Series(np.nan, index=test.index)
        asked, groups = requests(test, None)
        for request, group in zip(asked, groups):
            answer = recommender.recommend(request)
            rows = dict(zip(group["item_id"], group.index))
            for rank, item in enumerate(answer.items):
                probability[rows[item.item_id]] = item.like_probability
                order[rows[item.item_id]] = len(answer.items) - rank
    unanswered = int(probability.isna().sum())
    if unanswered:  # a shortlist is ranked whole and deadlines are lifted: a missing row is a fault, not a score
        raise LLMRecError(f"the served recommender left {unanswered} test rows unanswered")
    chosen = {
        "context model": model.card,
        "blend": {mode: {**w.signals, "mmr_lambda": w.mmr_lambda} for mode, w in trained.scenes.get(scene, {}).items()},
    }
    return probability.to_numpy(), order.to_numpy(), chosen


def scene_metrics(test: pd.DataFrame, scores: np.ndarray, ranking: np.ndarray | None = None) -> dict[str, float]:
    """AUC and logloss of `scores` overall and per scene; per scene also NDCG@10 of each user's test
    rows ranked by `ranking` (default `scores`; positives relevant; users without a positive test row
    are left out, as MSR does)."""
    ranking = scores if ranking is None else ranking
    labels = test["label"].to_numpy()
    out = {"auc": metrics.auc(labels, scores), "logloss": metrics.logloss(labels, scores)}
    for scene in SCENES:
        mask = (test["scene"] == scene).to_numpy()
        out[f"auc ({scene})"] = metrics.auc(labels[mask], scores[mask])
        out[f"logloss ({scene})"] = metrics.logloss(labels[mask], scores[mask])
        ranked, relevant = _user_rankings(test[mask], ranking[mask])
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


def run_scenes(names: list[str], max_users: int | None = None, catalog: Catalog | None = None) -> Run:
    """Every named model on the ml1m-scenes split; predictions are each user's test rows ranked."""
    unknown = [n for n in names if n not in SCENE_MODELS]
    if unknown:
        raise LLMRecError(f"unknown model {unknown[0]!r} for ml1m-scenes; choose from {', '.join(SCENE_MODELS)}")
    split = ml1m_scenes_split(max_users, catalog)
    features = Features(split.catalog)
    run = Run("ml1m-scenes")
    for name in names:
        started = time.perf_counter()
        if name == "llmrec":
            scores, ranking, chosen = served(split)
        else:
            (scores, chosen), ranking = predict(name, split, features), None
        run.results[name] = scene_metrics(split.test, scores, ranking)
        run.details[name] = {"params": chosen, "seconds": round(time.perf_counter() - started, 1)}
        ordered = _by_user(split.test, scores if ranking is None else ranking)
        ranks = ordered.groupby("user_id").cumcount() + 1
        run.predictions += [
            (name, u, i, int(r), float(s)) for u, i, r, s in zip(ordered["user_id"], ordered["item_id"], ranks, ordered["score"])
        ]
    return run
