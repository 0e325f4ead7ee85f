"""Encoder deployment: text → vectors; concurrent single-text calls are embedded as one batch."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from llmrec.config import PipelineConfig
from llmrec.serving.encoder import Encoder


@serve.deployment(name="Encoder", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class EncoderDeployment:
    def __init__(self, config: PipelineConfig) -> None:
        self.encoder = Encoder(config.encoder)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching from the Serve config's `user_config`, changeable without a restart."""
        self.encode.set_max_batch_size(int(user_config.get("max_batch_size", 32)))
        self.encode.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.005)))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def encode(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.encoder.encode(texts))

    def encode_many(self, texts: list[str]) -> np.ndarray:
        """One caller's many texts (an item batch): already a batch, so not queued with others."""
        return self.encoder.encode(texts)

    def ready(self) -> bool:
        return True

    def check_health(self) -> None:
        if self.encoder.encode(["health"]).shape != (1, self.encoder.dim):
            raise RuntimeError("the encoder returned a vector of the wrong shape")
