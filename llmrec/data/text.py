"""How items and users become text for the language models.

The encoder only sees what is written here, so this is where cold start happens: a new item is
its title, attributes and description; a new user is a request, a profile and a few liked items.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TEXT_VERSION = 2  # bump when rendering changes: saved indexes keyed on an older version are rebuilt
MAX_ITEM_CHARS = 1200
MAX_USER_CHARS = 1500

# Attribute order per scene: the most telling first (the encoder truncates long inputs).
ATTRIBUTE_ORDER: dict[str, list[str]] = {
    "movie": ["year", "genres", "director", "actors"],
    "music": ["artist", "genres", "year", "peak_position"],
    "grocery": ["category", "brand", "review_sentiment"],
    "books": ["authors", "year", "shelves", "publisher"],
    "news": ["category", "subcategory", "entities"],
}
# Bookkeeping attributes that say nothing about the item's content.
HIDDEN_ATTRIBUTES = {"source", "title_source", "entity_id", "no_metadata"}
# An item's LLM profile (llmrec/profiling) is kept under this attribute: its keywords and summary are rendered as text.
PROFILE_ATTRIBUTE = "profile"
# `title_source` values of a title that only stands in for a missing one (the start of the raw text).
PROVISIONAL_TITLES = {"text", "review"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def render_item(
    scene: str,
    title: str,
    attributes: Mapping[str, Any],
    text: str = "",
    facts: Iterable[tuple[str, str]] = (),
) -> str:
    """One line of text per item: scene, title, ordered attributes, facts, then the description."""
    order = ATTRIBUTE_ORDER.get(scene, [])
    keys = [k for k in order if k in attributes] + sorted(k for k in attributes if k not in order)
    parts = [f"{scene.capitalize()}: {title}." if title else f"{scene.capitalize()}."]
    parts += [f"{_label(k)}: {_value(attributes[k])}." for k in keys if k not in HIDDEN_ATTRIBUTES and k != PROFILE_ATTRIBUTE]
    parts += [f"{_label(relation)}: {obj}." for relation, obj in facts]
    profile = attributes.get(PROFILE_ATTRIBUTE)
    if isinstance(profile, Mapping):
        if profile.get("keywords"):
            parts.append(f"Keywords: {_value(profile['keywords'])}.")
        if profile.get("summary"):
            parts.append(str(profile["summary"]))
    if text:
        parts.append(text.strip())
    return " ".join(parts)[:MAX_ITEM_CHARS]


def provisional_title(text: str, limit: int = 80) -> str:
    """A title for an item that came without one: the first sentence of its text, cut at a word."""
    first = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def render_user(
    query: str | None = None,
    liked_titles: Sequence[str] = (),
    profile: Mapping[str, Any] | None = None,
) -> str:
    """A user as text: the request first (it is what they want now), then taste, then who they are."""
    parts = []
    if query:
        parts.append(query.strip())
    if liked_titles:
        parts.append("Liked: " + "; ".join(liked_titles) + ".")
    if profile:
        parts.append("About me: " + ", ".join(f"{_label(k).lower()} {_value(v)}" for k, v in profile.items()) + ".")
    return " ".join(parts)[:MAX_USER_CHARS]


def attribute_tokens(attributes: dict[str, Any]) -> list[str]:
    """Categorical tokens of an item ('genres=Comedy', 'year=1995-1999'): the content features
    that TF-IDF and the popularity-from-content regression read."""
    tokens = []
    for key, value in attributes.items():
        if key == "year" and isinstance(value, (int, float)):
            start = int(value) // 5 * 5
            tokens.append(f"year={start}-{start + 4}")
        elif isinstance(value, list):
            tokens += [f"{key}={v}" for v in value]
        elif isinstance(value, str):
            tokens.append(f"{key}={value}")
    return tokens
