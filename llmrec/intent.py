"""Free text → a structured intent that the router, retriever and reranker can use.

The intent is a schema, not free text: whatever produced it (a language model, the cache, the
fallback) is validated into `Intent`, so nothing a user writes reaches the pipeline unchecked.
The `none` backend is the fallback itself: no scene (the router then uses embeddings) and the raw
text as the retrieval query.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmrec.config import IntentConfig

MAX_QUERY_CHARS = 500


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    year_min: int | None = None
    year_max: int | None = None
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    language: str | None = Field(None, max_length=40)
    mood: str | None = Field(None, max_length=60)


class Intent(BaseModel):
    """What the user asks for, as far as the parser could tell."""

    model_config = ConfigDict(extra="forbid")

    scene: str | None = Field(None, description="One of the configured scenes, or None when unclear.")
    keywords: list[str] = Field(default_factory=list, max_length=20)
    include: list[str] = Field(default_factory=list, max_length=20, description="Categories or genres wanted.")
    exclude: list[str] = Field(default_factory=list, max_length=20, description="Categories or genres not wanted.")
    constraints: Constraints = Field(default_factory=Constraints)
    query: str = Field("", max_length=MAX_QUERY_CHARS, description="The request rewritten for retrieval.")
    source: Literal["model", "cache", "fallback"] = "fallback"


def fallback_intent(text: str) -> Intent:
    return Intent(query=text.strip()[:MAX_QUERY_CHARS], source="fallback")


class IntentParser:
    """Parses with the configured backend; the scenes (name → description) are what it may answer."""

    def __init__(self, config: IntentConfig | None = None, scenes: dict[str, str] | None = None) -> None:
        self.config = config or IntentConfig()
        self.scenes = dict(scenes or {})

    def parse(self, text: str) -> Intent:
        return fallback_intent(text)
