"""Scene routing: explicit scene > the language model's judgement (a scene, or none of them) >
nearest scene description > history > default."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.errors import NotFoundError, RequestError


@dataclass
class RouteDecision:
    scene: str | None  # None: no scene fits the request (source "none_fits")
    source: str  # "explicit" | "intent" | "none_fits" | "embedding" | "history" | "default"
    scores: dict[str, float] = field(default_factory=dict)


def scene_texts(catalog: Catalog) -> dict[str, str]:
    """One text per scene, its name and description: a new scene needs only those."""
    return {s: f"{n}: {d}" for s, n, d in catalog.scenes[["scene", "name", "description"]].itertuples(index=False)}


class SceneRouter:
    """Holds one embedding per scene (its name and description); a new scene needs only those."""

    def __init__(self, scene_texts: Mapping[str, str], scene_vectors: np.ndarray, default_scene: str | None = None) -> None:
        self.scenes = list(scene_texts)
        self.texts = dict(scene_texts)
        self.vectors = np.asarray(scene_vectors, dtype=np.float32)
        if default_scene is not None and default_scene not in self.texts:
            raise ValueError(f"default scene {default_scene!r} is not one of {self.scenes}")
        self.default_scene = default_scene

    def check(self, scene: str) -> str:
        if scene not in self.texts:
            raise NotFoundError(f"unknown scene {scene!r}; known scenes: {self.scenes}")
        return scene

    def route(
        self,
        explicit: str | None = None,
        intent_scene: str | None = None,
        query_vector: np.ndarray | None = None,
        history_scenes: Sequence[str] = (),
        none_fits: bool = False,
    ) -> RouteDecision:
        """`none_fits`: the language model read the request and found it about none of the scenes (a
        hotel room, a flight): that is the answer, rather than the nearest scene's items."""
        if explicit:
            return RouteDecision(self.check(explicit), "explicit")
        if intent_scene in self.texts:  # an LLM may name a scene that does not exist: ignore it then
            return RouteDecision(intent_scene, "intent")
        if none_fits:
            return RouteDecision(None, "none_fits")
        if query_vector is not None:
            similarity = self.vectors @ np.asarray(query_vector, dtype=np.float32).ravel()
            scores = {s: round(float(v), 4) for s, v in zip(self.scenes, similarity)}
            return RouteDecision(self.scenes[int(np.argmax(similarity))], "embedding", scores)
        if history_scenes:
            return RouteDecision(Counter(history_scenes).most_common(1)[0][0], "history")
        if self.default_scene:
            return RouteDecision(self.default_scene, "default")
        raise RequestError(f"cannot tell which scene to recommend from: send a scene (one of {self.scenes}) or a query")
