"""IntentParser deployment: free text → Intent, for the configured scenes.

Its own deployment because the LLM must scale and be placed on its own (vLLM on GPU replicas: give
it `num_gpus` in the Serve config). Serve runs the sync `parse` in a thread pool, so concurrent
requests reach the parser together: the vllm backend sends them to the engine as one batch
(llmrec.intent.batching.MicroBatcher); the transformers backend takes them one at a time.
"""

from __future__ import annotations

from ray import serve

from deployments.stage import Ready
from llmrec.config import PipelineConfig
from llmrec.data.catalog import load_catalog
from llmrec.intent.parser import IntentParser
from llmrec.serving.router import scene_texts


@serve.deployment(name="IntentParser", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class IntentParserDeployment(IntentParser, Ready):
    def __init__(self, config: PipelineConfig) -> None:
        super().__init__(config.intent, scene_texts(load_catalog(config.catalog)))
