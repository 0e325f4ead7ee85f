"""IntentParser deployment: free text → Intent, for the configured scenes.

Calls run in worker threads so that concurrent requests reach the parser together: the vllm
backend sends them to the engine as one batch (llmrec.intent.MicroBatcher), the transformers
backend takes them one at a time. Which backend runs is `intent.backend` in the pipeline config
(`vllm` on GPU replicas: give the deployment `num_gpus` in the Serve config).
"""

from __future__ import annotations

import asyncio

from ray import serve

from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.intent.parser import IntentParser
from llmrec.intent.schema import Intent


@serve.deployment(name="IntentParser", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class IntentParserDeployment:
    def __init__(self, config: PipelineConfig) -> None:
        scenes = load_catalog(config.catalog).scenes
        self.parser = IntentParser(config.intent, dict(zip(scenes["scene"], scenes["description"])))

    async def parse(self, text: str) -> Intent:
        return await asyncio.to_thread(self.parser.parse, text)

    def ready(self) -> bool:
        return True
