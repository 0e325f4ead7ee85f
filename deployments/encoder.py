"""Encoder deployment: text → vectors; concurrent single-text calls are embedded as one batch.

Its own deployment because the encoder is what a GPU speeds up: in the cluster its replicas hold
a GPU share and scale with the request rate, apart from the CPU-bound ranking state.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve

from deployments.stage import Ready
from llmrec.config import PipelineConfig
from llmrec.serving.encoder import Encoder


@serve.deployment(name="Encoder", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class EncoderDeployment(Encoder, Ready):
    def __init__(self, config: PipelineConfig) -> None:
        super().__init__(config.encoder)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching from the Serve config's `user_config`, changeable without a restart."""
        self.embed.set_max_batch_size(int(user_config.get("max_batch_size", 32)))
        self.embed.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.005)))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        """`Encoder.embed` for many concurrent callers: one `encode` per batch, off the replica's event loop."""
        return list(await asyncio.to_thread(self.encode, texts))

    def check_health(self) -> None:
        if self.encode(["health"]).shape != (1, self.dim):
            raise RuntimeError("the encoder returned a vector of the wrong shape")
