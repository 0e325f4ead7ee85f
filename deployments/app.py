"""The application builder: `serve run deployments.app:build_app config=local` or a Serve config file.

No `from __future__ import annotations` here: Serve reads the builder's argument type to parse `args`.
"""


from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from llmrec.config import load_config


class AppArgs(BaseModel):
    """The `args` of the Serve config (or `key=value` pairs after `serve run ... build_app`)."""

    model_config = ConfigDict(extra="forbid")

    config: str = Field("local", description="Pipeline profile (local, cluster) or a YAML file.")
    overrides: list[str] = Field(default_factory=list, description="section.key=value pairs, e.g. encoder.model=/models/ft.")


def build_app(args: AppArgs) -> Application:
    from deployments.encoder import EncoderDeployment
    from deployments.ingress import Ingress
    from deployments.intent import IntentParserDeployment
    from deployments.profiler import ProfilerDeployment
    from deployments.ranker import RankerDeployment

    config = load_config(args.config, args.overrides)
    return Ingress.bind(
        config,
        IntentParserDeployment.bind(config),
        EncoderDeployment.bind(config),
        RankerDeployment.bind(config),
        ProfilerDeployment.bind(config),
    )


# The default app as an object, for `serve build deployments.app:app` (which takes no builder args).
app = build_app(AppArgs())
