"""The Intent schema: what a parser may say about a request, and the limits on each field.

Whatever produced an intent (a language model, the cache, the fallback) is validated into `Intent`,
so nothing a user writes reaches the pipeline unchecked.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_QUERY_CHARS = 500
MAX_TERMS = 8  # keywords, include, exclude: at most this many each
MAX_TERM_CHARS = 40
YEARS = (1850, 2100)
MAX_PRICE = 1_000_000.0


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


def clean_text(text: str) -> str:
    """Control characters out, whitespace collapsed."""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


def normalize_text(text: str) -> str:
    """The cache key: NFKC, lower case, whitespace collapsed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()

