"""Request and response models: the public contract of the Python API, the CLI and (later) HTTP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmrec.intent.schema import Intent

MAX_QUERY_CHARS = 2000
MAX_HISTORY = 500
MAX_BATCH = 1000
Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Range(_Model):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class Filters(_Model):
    """Constraints every returned item satisfies."""

    exclude_item_ids: list[str] = Field(default_factory=list, max_length=10_000)
    exclude_seen: bool = Field(True, description="Leave out items the user already interacted with.")
    attributes: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="Item attribute equals the value, or shares one with the list (e.g. genres)."
    )
    ranges: dict[str, Range] = Field(default_factory=dict, description="Numeric attribute within [min, max], e.g. year.")


class RecommendRequest(_Model):
    """Who is asking (user id, history, profile), what for (query), where (scene) and how many (k)."""

    user_id: str | None = Field(None, min_length=1, max_length=200)
    query: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    scene: str | None = Field(None, min_length=1, max_length=100)
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY, description="Item ids the user liked.")
    profile: dict[str, Scalar] = Field(default_factory=dict, max_length=50)
    k: int | None = Field(None, ge=1, description="Defaults to the configured default_k; at most max_k.")
    filters: Filters = Field(default_factory=Filters)

    @field_validator("query")
    @classmethod
    def _blank_query_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _something_to_go_on(self) -> RecommendRequest:
        if not (self.user_id or self.query or self.history or self.profile):
            raise ValueError("empty request: send at least one of user_id, query, history or profile")
        return self


class ItemIn(_Model):
    """An item to add or replace; it is recommendable as soon as the call returns."""

    item_id: str = Field(min_length=1, max_length=300)
    scene: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=500)
    text: str = Field("", max_length=20_000)
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=100)


class EventIn(_Model):
    """Feedback from a user about an item."""

    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=300)
    kind: Literal["click", "view", "like", "dislike", "purchase", "rating"] = "click"
    value: float | None = Field(None, description="The rating for kind=rating (e.g. 1-5).")
    timestamp: int | None = Field(None, ge=0, description="Unix seconds; defaults to now.")

    @model_validator(mode="after")
    def _rating_has_value(self) -> EventIn:
        if self.kind == "rating" and self.value is None:
            raise ValueError("a rating event needs a value")
        return self


class IntentRequest(_Model):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)


class ItemBatch(_Model):
    """Items to add or replace in one call (any scenes)."""

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ItemBatch:
        """`{"items": [...]}` or a single item object."""
        return cls.model_validate(body) if "items" in body else cls(items=[ItemIn.model_validate(body)])


class EventBatch(_Model):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> EventBatch:
        """`{"events": [...]}` or a single event object."""
        return cls.model_validate(body) if "events" in body else cls(events=[EventIn.model_validate(body)])


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    scene: str
    score: float
    reasons: list[str]
    attributes: dict[str, Any] = Field(default_factory=dict)


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    scene: str
    scene_source: str
    scene_scores: dict[str, float] = Field(default_factory=dict, description="Similarity to each scene, when routed by embedding.")
    user_known: bool
    intent: Intent | None = Field(None, description="The parsed free text, when the request had any.")
    degraded: list[str] = Field(default_factory=list, description="Stages that failed or ran out of time, and what was done instead.")
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    request_id: str | None = None
