"""`llmrec`: the served recommender, scored by a protocol through the code that serves `/v1/recommend`.

A `Recommender` (the in-process form of the Serve app: the same Pipeline, Ranker, signals and
blend) is started on the protocol's training interactions; the blend is fitted on the protocol's
validation users by `llmrec train ranker`'s own fit (llmrec/training/ranker.py) and swapped into
the running Ranker, together with a newcomer model trained on the same training interactions (as
`llmrec train ranker --newcomers` trains one); every test user is then one `RecommendRequest`: the
user by id when the training data knows them, else their revealed history (the profile comes from
the catalog's user table); a protocol's candidate set is the request's shortlist (`filters.item_ids`). Deadlines are
lifted so that a busy machine cannot degrade an answer; everything else is the default profile's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import PipelineConfig, load_config
from llmrec.data.catalog import Catalog
from llmrec.evaluation.baselines import Model
from llmrec.evaluation.tasks import Metric, Queries, TrainData
from llmrec.serving.blend import TrainedBlend
from llmrec.serving.newcomers import NewcomerModel
from llmrec.serving.recommender import Recommender
from llmrec.serving.schemas import RecommendRequest
from llmrec.training.newcomers import train_newcomers
from llmrec.training.ranker import collect, fit_blend

NO_DEADLINE_MS = 600_000


def served_config(catalog_dir: Path, state_dir: Path, k: int, encoder: str | None, cross_encoder: str | None) -> PipelineConfig:
    """The default (local) profile over an evaluation catalog, its state in `state_dir`, without deadlines."""
    config = load_config("local")
    config.catalog = str(catalog_dir)
    config.store.url = f"sqlite:///{state_dir / 'state.db'}"
    config.max_k = max(config.max_k, k)
    config.intent.backend = "none"  # protocol requests carry no free text
    if encoder:
        config.encoder.model = encoder
    config.rerank.cross_encoder = cross_encoder
    config.rerank.model = None  # the protocol's own validation users fit the blend (Served.tune)
    for stage in type(config.deadline).model_fields:
        setattr(config.deadline, stage, NO_DEADLINE_MS)
    return config


class Served(Model):
    """The served recommender as a protocol model: started per training set, its blend fitted on validation."""

    def __init__(self, name: str, catalog: Catalog, encoder: str | None = None, cross_encoder: str | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.name = name
        self.catalog = catalog
        self.encoder = encoder
        self.cross_encoder = cross_encoder
        self.trained: TrainedBlend | None = None
        self.newcomers: dict[str, NewcomerModel] = {}
        self.recommender: Recommender | None = None
        self.known_users: set[str] = set()
        self.ids = np.asarray(catalog.items["item_id"].to_numpy(), dtype=object)  # the protocol's columns (catalog_items' order)
        scenes = catalog.scenes["scene"].tolist()
        if len(scenes) != 1:
            raise ValueError(f"a ranking protocol's catalog has one scene; {catalog.name} has {scenes}")
        self.scene = scenes[0]
        self._state = tempfile.TemporaryDirectory(prefix="llmrec-eval-")

    def _start(self, data: TrainData, k: int) -> Recommender:
        if data.frame is None:
            raise ValueError("the served model needs the training interactions (TrainData.frame)")
        base = self.catalog
        catalog = Catalog(f"eval-{base.name}", base.scenes, base.items, base.users, data.frame, base.kg)
        run = Path(self._state.name) / f"run-{len(list(Path(self._state.name).iterdir()))}"
        catalog.save(run / "catalog")
        recommender = Recommender(served_config(run / "catalog", run, k, self.encoder, self.cross_encoder), catalog)
        self.newcomers = train_newcomers(data.frame, catalog)
        recommender.ranker.blend.trained = self.trained or TrainedBlend({})
        recommender.ranker.blend.trained.newcomers = self.newcomers
        self.known_users = set(data.frame["user_id"])
        return recommender

    def tune(self, train: TrainData, valid: list[Queries], objective: Metric) -> float:
        _, _, k = objective
        self.recommender = self._start(train, k)
        examples = []
        for queries in valid:
            targets = [{self.ids[j] for j in relevant} for relevant in queries.relevant]
            examples += collect(self.recommender, self.requests(queries, k), targets)
        self.trained = fit_blend(examples, k, {"tuned_on": [q.name for q in valid]})
        self.trained.newcomers = self.newcomers
        self.recommender.ranker.blend.trained = self.trained
        self.params = {"k": k}
        fitted = [m for modes in self.trained.card["fitted"].values() for m in modes.values()]
        return float(np.average([m[f"ndcg@{k}"] for m in fitted], weights=[m["examples"] for m in fitted])) if fitted else 0.0

    @property
    def blend_weights(self) -> dict[str, dict[str, float]] | None:
        """What validation chose, per request mode (the report's `details`)."""
        if self.trained is None:
            return None
        return {mode: {**w.signals, "mmr_lambda": w.mmr_lambda} for mode, w in self.trained.scenes.get(self.scene, {}).items()}

    def fit(self, data: TrainData) -> Model:
        self.recommender = self._start(data, self.params.get("k", 10))
        return self

    def requests(self, queries: Queries, k: int) -> list[RecommendRequest]:
        """Each query user as a client would ask for them."""
        ids = self.ids
        shortlist = ids[queries.candidates].tolist() if queries.candidates is not None else []
        out = []
        for row, user in enumerate(queries.user_ids):
            history = [] if user in self.known_users else ids[queries.history[row].indices].tolist()
            out.append(RecommendRequest(user_id=user, history=history[-500:], scene=self.scene, k=k, filters={"item_ids": shortlist}))
        return out

    def score(self, queries: Queries) -> np.ndarray:
        """The served answers as scores: k - rank for each returned item, -inf for the rest."""
        if self.recommender is None:
            raise ValueError("tune or fit the served model first")
        ids = self.ids
        column = {item_id: n for n, item_id in enumerate(ids)}
        k = self.params.get("k", 10)
        scores = np.full((len(queries.user_ids), len(ids)), -np.inf, np.float32)
        for row, request in enumerate(self.requests(queries, k)):
            answer = self.recommender.recommend(request)
            for rank, item in enumerate(answer.items):
                scores[row, column[item.item_id]] = k - rank
        return scores
