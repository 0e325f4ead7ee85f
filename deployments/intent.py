"""IntentParser deployment: free text → Intent, for the configured scenes."""

from __future__ import annotations

from ray import serve

from llmrec.catalog import load_catalog
from llmrec.config import PipelineConfig
from llmrec.intent import Intent, IntentParser


@serve.deployment(name="IntentParser", ray_actor_options={"num_cpus": 0.5})
class IntentParserDeployment:
    def __init__(self, config: PipelineConfig) -> None:
        scenes = load_catalog(config.catalog).scenes
        self.parser = IntentParser(config.intent, dict(zip(scenes["scene"], scenes["description"])))

    def parse(self, text: str) -> Intent:
        return self.parser.parse(text)

    def ready(self) -> bool:
        return True
