"""Request and response models: the public contract of the Python API, the CLI and (later) HTTP.

Every collection and string a request can carry is capped, and numbers must be finite, so the work
one request causes is bounded and nothing reaches the store or the filters that they cannot hold:

| what | limit |
| --- | --- |
| `query` | 2,000 characters |
| `user_id` | 200 characters; `item_id` (history, exclusions, items, events) 300; `scene` 100; no control characters |
| `history` | 500 item ids |
| `profile` | 50 entries; keys 100 characters; values a string (200 characters), number or boolean |
| `filters.attributes`, `filters.exclude_attributes` | 20 keys (100 characters each); 100 values per key; each a string (200 characters), number or boolean |
| `filters.ranges` | 20 ranges; `min`/`max` finite numbers |
| `filters.exclude_item_ids` | 1,000 item ids |
| `filters.item_ids` (a shortlist to rank) | 1,000 item ids |
| integers in filters and profiles | within ±2^53 (exact as floats) |
| events | `value` finite; `timestamp` Unix seconds from 0 to 253402300799 (the year 9999); `event_id` 200 characters |
| items | 100 attributes nesting at most 5 levels, finite numbers; no NUL in `title`/`text` |
| batches | 1,000 items or events |
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llmrec.data.text import PROFILE_ATTRIBUTE, provisional_title
from llmrec.intent.schema import Intent

MAX_QUERY_CHARS = 2000
MAX_HISTORY = 500
MAX_BATCH = 1000
MAX_USER_ID_CHARS = 200
MAX_ITEM_ID_CHARS = 300
MAX_EVENT_ID_CHARS = 200
MAX_SCENE_CHARS = 100
MAX_KEY_CHARS = 100  # attribute, range and profile keys
MAX_VALUE_CHARS = 200  # one string value of filters.attributes or profile
MAX_FILTER_KEYS = 20
MAX_FILTER_VALUES = 100  # values of one filters.attributes key
MAX_RANGES = 20
MAX_EXCLUDE = 1000
MAX_SHORTLIST = 1000
MAX_PROFILE = 50
MAX_ITEM_ATTRIBUTES = 100
RESERVED_ATTRIBUTES = frozenset({PROFILE_ATTRIBUTE, "title_source"})
MAX_ATTRIBUTE_DEPTH = 5
MAX_INT = 2**53  # integers in filters and profiles compare as floats: beyond this they would not be exact
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z in Unix seconds
Scalar = str | int | float | bool

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # lone surrogates (pydantic refuses them in str fields, not inside Any)


def _code(match: re.Match) -> str:
    return f"U+{ord(match.group()):04X} at position {match.start()}"


def _check_id(text: str) -> str:
    found = _CONTROL.search(text)
    if found:
        raise PydanticCustomError("control_character", f"ids cannot contain control characters ({_code(found)})")
    return text


def _storable(text: str) -> str:
    if "\x00" in text:
        raise PydanticCustomError("nul_character", f"text cannot contain NUL characters (U+0000 at position {text.index(chr(0))}): the store cannot hold them")
    return text


def _short(key: Any) -> str:
    return repr(key if not isinstance(key, str) or len(key) <= 40 else key[:40] + "...")


def _check_scalar(where: str, value: Any, lists: bool) -> None:
    """A filter or profile value: a string, a finite number in range, or a boolean."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise PydanticCustomError("int_range", f"{where}: integers within ±2^53 ({MAX_INT}) only")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", f"{where}: numbers must be finite, not NaN or Infinity")
    elif isinstance(value, str):
        if len(value.strip()) > MAX_VALUE_CHARS:
            raise PydanticCustomError("string_too_long", f"{where}: strings of at most {MAX_VALUE_CHARS} characters, got {len(value.strip())}")
    else:
        kind = "a string, number or boolean, or a list of them" if lists else "a string, number or boolean"
        raise PydanticCustomError("scalar_type", f"{where}: expected {kind}, got {type(value).__name__}")


UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_ID_CHARS), AfterValidator(_check_id)]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ITEM_ID_CHARS), AfterValidator(_check_id)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EVENT_ID_CHARS), AfterValidator(_check_id)]
SceneName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SCENE_CHARS), AfterValidator(_check_id)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_CHARS), AfterValidator(_check_id)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Range(_Model):
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class Filters(_Model):
    """Constraints every returned item satisfies."""

    exclude_item_ids: list[ItemId] = Field(default_factory=list, max_length=MAX_EXCLUDE)
    item_ids: list[ItemId] = Field(
        default_factory=list,
        max_length=MAX_SHORTLIST,
        description=f"A shortlist: rank only these items, every one of them a candidate (e.g. a page's items, or new arrivals). At most {MAX_SHORTLIST}.",
    )
    exclude_seen: bool = Field(True, description="Leave out items the user already interacted with.")
    attributes: dict[Key, Scalar | list[Scalar]] = Field(
        default_factory=dict,
        description=f"Item attribute equals the value, or shares one with the list (e.g. genres): at most {MAX_FILTER_KEYS} keys, "
        f"{MAX_FILTER_VALUES} values per key.",
    )
    exclude_attributes: dict[Key, Scalar | list[Scalar]] = Field(
        default_factory=dict,
        description="Item attribute equals none of the values, and shares none with a list (e.g. genres not wanted): the same caps as `attributes`.",
    )
    ranges: dict[Key, Range] = Field(
        default_factory=dict, max_length=MAX_RANGES, description=f"Numeric attribute within [min, max], e.g. year: at most {MAX_RANGES}."
    )

    @field_validator("attributes", "exclude_attributes", mode="before")
    @classmethod
    def _bounded_attributes(cls, value: Any) -> Any:
        """Counted before anything is validated: a 20,000-value list is refused at once."""
        if not isinstance(value, dict):
            return value  # the type check says what is expected
        if len(value) > MAX_FILTER_KEYS:
            raise PydanticCustomError("too_many_keys", f"at most {MAX_FILTER_KEYS} attribute keys, got {len(value)}")
        for key, wanted in value.items():
            where = f"attribute {_short(key)}"
            if isinstance(wanted, list):
                if len(wanted) > MAX_FILTER_VALUES:
                    raise PydanticCustomError("too_many_values", f"{where}: at most {MAX_FILTER_VALUES} values, got {len(wanted)}")
                for one in wanted:
                    _check_scalar(where, one, lists=True)
            else:
                _check_scalar(where, wanted, lists=True)
        return value


class RecommendRequest(_Model):
    """Who is asking (user id, history, profile), what for (query), where (scene) and how many (k)."""

    user_id: UserId | None = None
    query: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    scene: SceneName | None = None
    context: SceneName | None = Field(
        None,
        description="Where the request comes from (an app surface, an audience, e.g. an age group): a scene whose context model was trained "
        "with it ranks with that context's own parts; any other context, or none, with the parts every context shares.",
    )
    history: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY, description="Item ids the user liked.")
    profile: dict[Key, Scalar] = Field(default_factory=dict, description=f"At most {MAX_PROFILE} entries.")
    k: int | None = Field(None, ge=1, description="Defaults to the configured default_k; at most max_k.")
    filters: Filters = Field(default_factory=Filters)

    @field_validator("query")
    @classmethod
    def _blank_query_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("profile", mode="before")
    @classmethod
    def _bounded_profile(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if len(value) > MAX_PROFILE:
            raise PydanticCustomError("too_many_entries", f"at most {MAX_PROFILE} entries, got {len(value)}")
        for key, one in value.items():
            _check_scalar(f"profile {_short(key)}", one, lists=False)
        return value

    @model_validator(mode="after")
    def _something_to_go_on(self) -> RecommendRequest:
        if not (self.user_id or self.query or self.history or self.profile):
            raise ValueError("empty request: send at least one of user_id, query, history or profile")
        return self


class ItemIn(_Model):
    """An item to add or replace; it is recommendable as soon as the call returns."""

    item_id: ItemId
    scene: SceneName
    title: Annotated[str, StringConstraints(max_length=500), AfterValidator(_storable)] = Field(
        "", description="Optional: an item sent with only its text gets the text's first sentence as a title at once, and its LLM profile's "
        "title when the background profiler has written it."
    )
    text: Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_storable)] = ""
    attributes: dict[Key, Any] = Field(default_factory=dict, max_length=MAX_ITEM_ATTRIBUTES)

    @model_validator(mode="after")
    def _titled(self) -> ItemIn:
        """A title, or a text to take one from (the item is marked for profiling: `title_source` "text")."""
        if not self.title.strip():
            if not self.text.strip():
                raise PydanticCustomError("title_or_text", "send a title, or a text to recommend the item by (a title is then written from it)")
            self.title = provisional_title(self.text)
            self.attributes = {**self.attributes, "title_source": "text"}
        return self

    @field_validator("attributes", mode="before")
    @classmethod
    def _storable_attributes(cls, value: Any) -> Any:
        """Finite numbers and valid text all the way down, nesting at most MAX_ATTRIBUTE_DEPTH levels;
        none of the attributes llmrec keeps for profiles (a client's would stop or misdirect them)."""
        if not isinstance(value, dict):
            return value
        for key in RESERVED_ATTRIBUTES & set(value):
            raise PydanticCustomError("reserved_attribute", f"attribute {key!r} is written by llmrec (LLM item profiles): leave it out")
        stack = [(one, 1, _short(key)) for key, one in value.items()]
        while stack:
            node, depth, where = stack.pop()
            if isinstance(node, float) and not math.isfinite(node):
                raise PydanticCustomError("finite_number", f"attribute {where}: numbers must be finite, not NaN or Infinity")
            found = _SURROGATE.search(node) if isinstance(node, str) else None
            if found:
                raise PydanticCustomError("lone_surrogate", f"attribute {where}: text cannot contain lone surrogates ({_code(found)}): send valid UTF-8")
            if isinstance(node, (list, dict)):
                if depth >= MAX_ATTRIBUTE_DEPTH:
                    raise PydanticCustomError("too_deep", f"attribute {where}: values nest at most {MAX_ATTRIBUTE_DEPTH} levels deep")
                children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
                for child_key, child in children:
                    if isinstance(child_key, str):
                        stack.append((child_key, depth + 1, where))
                    stack.append((child, depth + 1, where))
        return value


class EventIn(_Model):
    """Feedback from a user about an item."""

    user_id: UserId
    item_id: ItemId
    kind: Literal["click", "view", "like", "dislike", "purchase", "rating"] = "click"
    value: FiniteFloat | None = Field(None, description="The rating for kind=rating (e.g. 1-5); a finite number.")
    timestamp: int | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="Unix seconds (0 to 253402300799, the year 9999); defaults to now.")
    event_id: EventId | None = Field(
        None, description="A client-chosen id that makes the write idempotent: an event sent again with an id already stored is not stored twice, "
        "so a write that timed out or failed can be retried safely."
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _unix_seconds(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value <= MAX_TIMESTAMP:
            hint = " (milliseconds? divide by 1000)" if MAX_TIMESTAMP < value <= 1000 * MAX_TIMESTAMP else ""
            shown = repr(value) if len(repr(value)) <= 30 else f"{repr(value)[:12]}... ({len(repr(value))} digits)"
            raise PydanticCustomError("timestamp_range", f"Unix seconds from 0 to {MAX_TIMESTAMP} (the year 9999), got {shown}{hint}")
        return value

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

    def keyed(self, prefix: str) -> list[EventIn]:
        """The events, each without a client id given `prefix:position`: a caller that sends the write again
        (its replica died under the call) cannot store it twice. `prefix` must be unique to this write."""
        return [e if e.event_id else e.model_copy(update={"event_id": f"{prefix}:{i}"}) for i, e in enumerate(self.events)]

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
    like_probability: float | None = Field(None, description="The scene's context model's probability that the user likes the item, in the request's context; null when the scene has none.")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    scene: str | None = Field(description="The scene recommended from; null when no scene fits the request (then `items` is empty).")
    scene_source: str = Field(description="Why: explicit, intent, none_fits (the language model found the request about none of the scenes), embedding, history, default.")
    scene_scores: dict[str, float] = Field(default_factory=dict, description="Similarity to each scene, when routed by embedding.")
    user_known: bool
    intent: Intent | None = Field(None, description="The parsed free text, when the request had any.")
    degraded: list[str] = Field(default_factory=list, description="Stages that failed or ran out of time, and what was done instead.")
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    request_id: str | None = None


# ---- what the write and health routes answer ----


class Upserted(BaseModel):
    upserted: list[str]


class Deleted(BaseModel):
    deleted: list[str]


class Stored(BaseModel):
    stored: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    waiting_for: list[str]
