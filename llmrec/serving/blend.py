"""The served ranking model: a weighted blend of per-candidate signals, then diversification.

Each signal (`SIGNALS`) is min-max scaled over the candidate set and mixed with weights chosen per
scene and per kind of request (`mode`): weights learned from the scene's own interactions by
`llmrec train ranker` (llmrec/training/ranker.py) when its artifact is configured
(`rerank.model`), else the configured defaults (similarity, EASE and popularity). A trained
cross-encoder, when configured, then reorders the head of that ranking (`cross_encoder.rescore_head`).
MMR finally trades a little score for variety, using the item vectors the retriever already holds.
A scene's trained artifact may also hold a context model (llmrec/serving/context.py), whose
probability of a like in the context the request names is one more signal, and a newcomer model
(llmrec/serving/newcomers.py), whose logit for what users who started like this one chose next is
another.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import RerankConfig
from llmrec.errors import AssetError
from llmrec.serving.context import ContextModel
from llmrec.serving.cross_encoder import _minmax, rescore_head
from llmrec.serving.newcomers import NewcomerModel

CrossScores = Callable[[Sequence[str]], np.ndarray]  # item ids → cross-encoder scores for this request
SIGNALS = ("semantic", "lexical", "collaborative", "engaged", "bridge", "popularity", "demographic", "like_probability", "newcomer")
MODES = ("query", "history", "few", "profile")
FEW_HISTORY = 5  # a user with at most this many liked items in the scene is ranked as "few"
MODEL_FILE = "ranker.json"
MODEL_FORMAT = 1
MODEL_PREFIXES = {"contexts": "context-", "newcomers": "newcomer-"}  # a scene's model files, by the kind of model


def request_mode(has_query: bool, scene_history: int) -> str:
    """Which weights rank a request: a free-text query, a user with history, with a few liked items, or a profile alone."""
    if has_query:
        return "query"
    if scene_history > FEW_HISTORY:
        return "history"
    return "few" if scene_history else "profile"


@dataclass
class Candidate:
    """One item with its raw signals and, after ranking, its blended score."""

    item_id: str
    semantic: float = 0.0
    lexical: float = 0.0  # BM25 of the item for the query, or for the user's liked items
    collaborative: float = 0.0  # EASE over the items the user liked
    engaged: float = 0.0  # EASE over every item the user interacted with (but disliked)
    bridge: float = 0.0
    popularity: float = 0.0
    demographic: float = 0.0
    like_probability: float = 0.0  # the scene's context model, in the request's context (llmrec/serving/context.py)
    newcomer: float = 0.0  # the scene's newcomer model, from the profile and the latest interactions (llmrec/serving/newcomers.py)
    score: float = 0.0

    def signals(self) -> list[float]:
        return [getattr(self, s) for s in SIGNALS]


@dataclass
class Weights:
    """How one scene ranks one kind of request."""

    signals: dict[str, float]
    mmr_lambda: float
    trained: bool = False


@dataclass
class TrainedBlend:
    """The artifact of `llmrec train ranker`: per scene and mode, learned weights and their validation
    scores; and per scene, when trained, its context model and newcomer model (`.npz` files beside it)."""

    scenes: dict[str, dict[str, Weights]]
    card: dict[str, Any] = field(default_factory=dict)
    contexts: dict[str, ContextModel] = field(default_factory=dict)
    newcomers: dict[str, NewcomerModel] = field(default_factory=dict)

    def save(self, directory: Path) -> Path:
        """Each file written to a temporary file and renamed, the scenes' models first (named in
        ranker.json, so a replica that sees the new ranker.json finds those that go with it); then
        model files of an earlier training that ranker.json no longer names are removed."""
        directory.mkdir(parents=True, exist_ok=True)
        files = {kind: {scene: model_file(kind, scene) for scene in getattr(self, kind)} for kind in MODEL_PREFIXES}
        for kind, by_scene in files.items():
            for scene, name in by_scene.items():
                getattr(self, kind)[scene].save(directory / name)
        body = {
            "format": MODEL_FORMAT,
            "scenes": {s: {m: {"weights": w.signals, "mmr_lambda": w.mmr_lambda} for m, w in modes.items()} for s, modes in self.scenes.items()},
            **files,
            "card": self.card,
        }
        partial = directory / f".{MODEL_FILE}.{os.getpid()}.tmp"
        partial.write_text(json.dumps(body, indent=2))
        partial.replace(directory / MODEL_FILE)
        named = {directory / name for by_scene in files.values() for name in by_scene.values()}
        for prefix in MODEL_PREFIXES.values():
            for stale in set(directory.glob(f"{prefix}*.npz")) - named:
                stale.unlink(missing_ok=True)
        return directory / MODEL_FILE

    @classmethod
    def load(cls, directory: Path) -> TrainedBlend:
        path = directory / MODEL_FILE
        if not path.is_file():
            raise AssetError(f"rerank.model {directory} has no {MODEL_FILE}: give the output directory of `llmrec train ranker`")
        body = json.loads(path.read_text())
        if body.get("format") != MODEL_FORMAT:
            raise AssetError(f"{path} has format {body.get('format')}, expected {MODEL_FORMAT}: train it again with `llmrec train ranker`")
        scenes = {
            scene: {mode: Weights({s: float(v) for s, v in w["weights"].items() if s in SIGNALS}, float(w["mmr_lambda"]), True) for mode, w in modes.items()}
            for scene, modes in body["scenes"].items()
        }
        contexts = {scene: ContextModel.load(directory / str(name)) for scene, name in body.get("contexts", {}).items()}
        newcomers = {scene: NewcomerModel.load(directory / str(name)) for scene, name in body.get("newcomers", {}).items()}
        return cls(scenes, body.get("card", {}), contexts, newcomers)


def model_file(kind: str, scene: str) -> str:
    """A scene's model file of a kind (`MODEL_PREFIXES`): named by a hash, as a scene name may hold any character and length."""
    return f"{MODEL_PREFIXES[kind]}{hashlib.sha256(scene.encode()).hexdigest()[:16]}.npz"


class Blend:
    def __init__(self, config: RerankConfig | None = None, trained: TrainedBlend | None = None) -> None:
        self.config = config or RerankConfig()
        self.trained = trained

    def weights(self, scene: str, mode: str, has_text: bool, has_history: bool) -> Weights:
        """The scene's trained weights for this kind of request, else the configured defaults (each
        signal's weight counting only when the request has it: text, history)."""
        found = self.trained.scenes.get(scene, {}).get(mode) if self.trained is not None else None
        return found if found is not None else self.defaults(has_text, has_history)

    def context_model(self, scene: str) -> ContextModel | None:
        return self.trained.contexts.get(scene) if self.trained is not None else None

    def newcomer_model(self, scene: str) -> NewcomerModel | None:
        return self.trained.newcomers.get(scene) if self.trained is not None else None

    def defaults(self, has_text: bool, has_history: bool) -> Weights:
        """The configured weights, each counting only when the request has its signal."""
        defaults = {"semantic": self.config.semantic_weight if has_text else 0.0, "popularity": self.config.popularity_weight}
        if has_history:
            defaults["collaborative"] = self.config.collaborative_weight
        return Weights(defaults, self.config.mmr_lambda)

    @staticmethod
    def blend(candidates: Sequence[Candidate], weights: Mapping[str, float]) -> np.ndarray:
        """The blended score of each candidate, in [0, 1] when the weights are non-negative."""
        return blend_table(np.array([c.signals() for c in candidates], dtype=np.float64).reshape(len(candidates), len(SIGNALS)), weights)

    def rank(
        self, candidates: list[Candidate], vectors: np.ndarray, k: int, weights: Weights, cross: CrossScores | None = None, fallback: Weights | None = None
    ) -> list[Candidate]:
        """Top-k candidates by maximal marginal relevance over the blended score (its head rescored
        with `cross` when given). Trained weights whose signals are all flat over these candidates
        (e.g. demographic weights for a request with no profile) yield to `fallback`."""
        if not candidates:
            return []
        scores = self.blend(candidates, weights.signals)
        if fallback is not None and weights.trained and np.ptp(scores) < 1e-12:
            weights = fallback
            scores = self.blend(candidates, weights.signals)
        if cross is not None:
            ids = [c.item_id for c in candidates]
            scores = rescore_head(scores, lambda head: cross([ids[i] for i in head]), self.config.cross_weight, self.config.cross_candidates)
        for candidate, score in zip(candidates, scores):
            candidate.score = float(score)
        order = mmr(scores, vectors, k, weights.mmr_lambda)
        return [candidates[i] for i in order]


def blend_table(table: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """candidates x SIGNALS raw values → Σ weight · min-max(signal) / Σ weight (training scores tables with this too)."""
    total = sum(weights.values()) or 1.0
    blended = np.zeros(len(table))
    for column, signal in enumerate(SIGNALS):
        weight = weights.get(signal, 0.0)
        if weight:
            blended += weight * _minmax(table[:, column])
    return blended / total


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
