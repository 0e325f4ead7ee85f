"""SceneRouter deployment: picks the scene of a request (explicit, intent, embedding, history, default)."""

from __future__ import annotations

import numpy as np
from ray import serve

from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.serving.encoder import Encoder
from llmrec.serving.router import RouteDecision, SceneRouter


@serve.deployment(name="SceneRouter", ray_actor_options={"num_cpus": 0.5})
class SceneRouterDeployment:
    def __init__(self, config: PipelineConfig) -> None:
        encoder = Encoder(config.encoder.model_copy(update={"device": "cpu"}))  # a few scene texts: no GPU needed
        self.router = SceneRouter.from_catalog(load_catalog(config.catalog), encoder.encode, config.router.default_scene)

    def route(self, explicit: str | None, intent_scene: str | None, vector: np.ndarray | None, history_scenes: list[str]) -> RouteDecision:
        return self.router.route(explicit, intent_scene, vector, history_scenes)

    def texts(self) -> dict[str, str]:
        return self.router.texts

    def ready(self) -> bool:
        return True
