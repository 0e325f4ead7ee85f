"""Reading the model's answer: lenient JSON, then field by field into the schema."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

from llmrec.intent.rules import ordered, rule_constraints, rule_exclusions
from llmrec.intent.schema import (
    MAX_PRICE,
    MAX_QUERY_CHARS,
    MAX_TERM_CHARS,
    MAX_TERMS,
    YEARS,
    Constraints,
    Intent,
    clean_text,
    normalize_text,
)


class JsonScanner:
    """Follows JSON text as it streams in: inside a string or not, and the brackets still open."""

    def __init__(self, closers: Sequence[str] = (), in_string: bool = False) -> None:
        self.closers = list(closers)  # what closes each open bracket, innermost last
        self.in_string = in_string
        self.escaped = False

    def feed(self, text: str) -> None:
        for ch in text:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.closers.append("}" if ch == "{" else "]")
            elif ch in "}]" and self.closers:
                self.closers.pop()


def _close_json(fragment: str) -> str:
    """Close an answer cut off mid-way: open string, dangling key or comma, open brackets."""
    scanner = JsonScanner()
    scanner.feed(fragment)
    out = fragment + ('"' if scanner.in_string else "")
    out = re.sub(r'(,\s*"[^"]*"\s*:\s*|,\s*)$', "", out.rstrip())  # dangling key or comma
    if out.endswith(":"):
        out += " null"
    return out + "".join(reversed(scanner.closers))


def extract_json(raw: str) -> tuple[dict[str, Any] | None, bool]:
    """The first JSON object in `raw` → (object or None, whether it needed repair)."""
    start = raw.find("{")
    if start < 0:
        return None, False
    text = raw[start:]
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
        if isinstance(value, dict):
            return value, False
    except json.JSONDecodeError:
        pass
    candidate = _close_json(text)
    for _ in range(8):  # cut back to the last complete element until it parses
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)
            return (value, True) if isinstance(value, dict) else (None, True)
        except json.JSONDecodeError:
            cut = max(candidate.rfind(",", 0, len(candidate) - 1), candidate.rfind("[", 0, len(candidate) - 1) + 1, candidate.rfind("{", 0, len(candidate) - 1) + 1)
            if cut <= 1:
                break
            candidate = _close_json(candidate[:cut].rstrip(","))
    return None, True


LANGUAGES: dict[str, tuple[str, ...]] = {
    "english": ("english", "en", "英文", "英语"),
    "chinese": ("chinese", "mandarin", "zh", "中文", "华语", "国语", "普通话", "汉语"),
    "cantonese": ("cantonese", "粤语", "广东话"),
    "french": ("french", "fr", "法语", "法国", "法文"),
    "japanese": ("japanese", "ja", "日语", "日本", "日文"),
    "korean": ("korean", "ko", "韩语", "韩国", "韩文"),
    "spanish": ("spanish", "es", "西班牙"),
    "german": ("german", "de", "德语", "德国"),
    "italian": ("italian", "it", "意大利"),
    "hindi": ("hindi", "印地语", "bollywood", "宝莱坞"),
}


def canonical_language(value: str | None) -> str | None:
    if not value:
        return None
    low = normalize_text(value)
    for name, aliases in LANGUAGES.items():
        if low == name or low in aliases:
            return name
    return low


def _language_in_text(language: str, text: str) -> bool:
    low = normalize_text(text)
    aliases = [a for a in LANGUAGES.get(language, (language,)) if len(a) > 2]
    return any(a in low for a in aliases)


def _terms(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value:
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            term = clean_text(str(item))[:MAX_TERM_CHARS]
            if term and term.lower() not in {t.lower() for t in out}:
                out.append(term)
        if len(out) >= MAX_TERMS:
            break
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*[$€£¥]?\s*(\d+(?:\.\d+)?)\s*", value)
        return float(match.group(1)) if match else None
    return None



def _grounded(number: float, text: str) -> bool:
    """A number from the model is kept only when the text states it."""
    digits = re.findall(r"\d+(?:\.\d+)?", unicodedata.normalize("NFKC", text))
    return any(float(d) == number for d in digits)


def coerce_intent(data: dict[str, Any] | None, scenes: Sequence[str], text: str, source: Literal["model", "cache", "fallback"] = "model") -> Intent:
    """Whatever the model answered → a valid Intent. Never raises for odd content."""
    data = data if isinstance(data, dict) else {}
    by_lower = {s.lower(): s for s in scenes}
    scene = data.get("scene")
    scene = by_lower.get(scene.strip().lower()) if isinstance(scene, str) else None
    raw_constraints = data.get("constraints")
    raw_constraints = dict(raw_constraints) if isinstance(raw_constraints, dict) else {}
    for key in Constraints.model_fields:  # flat answers ({"year_min": 1990, ...}) are read too
        if key in data and key not in raw_constraints:
            raw_constraints[key] = data[key]
    constraints: dict[str, Any] = {}
    for key in ("year_min", "year_max"):
        value = _number(raw_constraints.get(key))
        if value is not None and YEARS[0] <= value <= YEARS[1] and _grounded(value, text):
            constraints[key] = int(value)
    for key in ("price_min", "price_max"):
        value = _number(raw_constraints.get(key))
        if value is not None and 0 <= value <= MAX_PRICE and _grounded(value, text):
            constraints[key] = value
    ruled = rule_constraints(text)
    if any(k.startswith("year") for k in ruled):
        constraints = {k: v for k, v in constraints.items() if not k.startswith("year")}
    if any(k.startswith("price") for k in ruled):
        constraints = {k: v for k, v in constraints.items() if not k.startswith("price")}
    constraints = ordered({**constraints, **ruled})
    language = raw_constraints.get("language")
    if isinstance(language, str):
        language = canonical_language(clean_text(language)[:40])
        if language and _language_in_text(language, text):
            constraints["language"] = language
    mood = raw_constraints.get("mood")
    if isinstance(mood, str) and clean_text(mood):
        constraints["mood"] = clean_text(mood)[:60].lower()
    return Intent(
        scene=scene,
        keywords=_terms(data.get("keywords")),
        include=_terms(data.get("include")),
        exclude=list(dict.fromkeys([*_terms(data.get("exclude")), *rule_exclusions(text)]))[:MAX_TERMS],
        constraints=Constraints(**constraints),
        query=clean_text(text)[:MAX_QUERY_CHARS],
        source=source,
    )


