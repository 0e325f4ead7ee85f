"""What the text states outright, read by rules, not by the model: years and prices (English and
Chinese) and the categories ruled out ("no horror", English). Without a model, or when it is too
slow, these rules are the whole intent (`fallback_intent`)."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from llmrec.intent.schema import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    Constraints,
    Intent,
    normalize_text,
)

# --- years and prices stated in the text (English and Chinese) ---------------------------------
#
# Linear time on any text: the scan is bounded (RULE_SCAN_CHARS of the NFKC-normalised text: NFKC can
# expand one character into up to 18), and every number starts where a run of digits starts
# ((?<!\d)) and takes the whole run at once (\d++), so no search restarts inside a run or gives
# digits back: a run of n digits costs O(n), not O(n^2).

RULE_SCAN_CHARS = 2000  # a request's query is at most this long (llmrec/serving/schemas.py)
_CN_DECADES = {"五": 1950, "六": 1960, "七": 1970, "八": 1980, "九": 1990}
_YEAR = r"((?:18|19|20)\d\d)"
_NUMBER = r"(?<!\d)(\d++(?:\.\d++)?)"
_MONEY_UNIT = r"(?:dollars?|bucks?|usd|euros?|eur|pounds?|gbp|yuan|rmb|美元|美金|刀|欧元|英镑|元|块钱|块)"
_AMOUNT = rf"(?:[$€£¥]\s*{_NUMBER}|{_NUMBER}\s*{_MONEY_UNIT})"
_BELOW = r"under|below|less than|cheaper than|at most|max(?:imum)?|up to|within|no more than|not more than|不超过|低于|少于|不到|最多"

_DECADE = re.compile(r"\b(early|mid|late)?[\s-]{0,3}(?:the\s+)?((?:19|20)?\d)0'?s\b")
_CN_DECADE = re.compile(r"([五六七八九]十|\d0)年代(初|中|末)?(以后|之后|以来|以前|之前)?")
_YEAR_RANGE = re.compile(rf"(?:between|from)\s+{_YEAR}\s+(?:and|to|until)\s+{_YEAR}|{_YEAR}\s*年?\s*(?:-|–|~|到|至)\s*{_YEAR}")
_ANY_YEAR = re.compile(_YEAR)
_YEAR_MIN = re.compile(rf"(?:after|since|newer than|later than|not older than|nothing older than|no older than|post-?)\s*{_YEAR}|{_YEAR}\s*年?\s*(?:以后|之后|以来|后)")
_YEAR_MAX = re.compile(rf"(?:before|until|(?<!nothing )(?<!not )(?<!no )older than|prior to|up to|pre-?)\s*{_YEAR}|{_YEAR}\s*年?\s*(?:以前|之前|前)")
_SINGLE_YEAR = re.compile(rf"(?:from|in|of)\s+{_YEAR}\b|{_YEAR}\s*年的")
_PRICE_RANGE = re.compile(rf"between\s+[$€£¥]?\s*{_NUMBER}\s*{_MONEY_UNIT}?\s*and\s+{_AMOUNT}|{_NUMBER}\s*(?:到|至|-|~)\s*{_AMOUNT}")
_PRICE_MAX = re.compile(rf"(?:{_BELOW})\s*{_AMOUNT}|{_AMOUNT}\s*(?:以内|以下|之内|内)")
_PRICE_MIN = re.compile(rf"(?:over|above|(?<!no )(?<!not )more than|at least|min(?:imum)?|(?<!不)超过|高于|至少|不低于)\s*{_AMOUNT}|{_AMOUNT}\s*以上")


def _amount(match: re.Match, first: int) -> float:
    return float(match.group(first) or match.group(first + 1))


def rule_constraints(text: str) -> dict[str, Any]:
    """Years and prices that the text states outright; {} when it states none."""
    low = normalize_text(text[:RULE_SCAN_CHARS])[:RULE_SCAN_CHARS]
    out: dict[str, Any] = {}
    # decades: 90s, 1990s, the late 80's, 九十年代末, 90年代
    m = _DECADE.search(low)
    cn = _CN_DECADE.search(low)
    if m:
        digits = m.group(2)
        start = int(digits) * 10 if len(digits) == 3 else (1900 + int(digits) * 10 if int(digits) >= 3 else 2000 + int(digits) * 10)
        part = m.group(1)
    elif cn:
        key = cn.group(1)
        start = _CN_DECADES[key[0]] if key[0] in _CN_DECADES else (1900 + int(key) if int(key) >= 30 else 2000 + int(key))
        part = {"初": "early", "中": "mid", "末": "late"}.get(cn.group(2) or "")
    else:
        start = None
    if start is not None:
        lo, hi = {"early": (0, 3), "mid": (3, 6), "late": (7, 9)}.get(part or "", (0, 9))
        bound = cn.group(3) if cn and not m else None
        if bound in ("以后", "之后", "以来"):
            out["year_min"] = start + lo
        elif bound in ("以前", "之前"):
            out["year_max"] = start + hi
        else:
            out.update(year_min=start + lo, year_max=start + hi)
    # explicit years: ranges, then open bounds, then a single year
    m = _YEAR_RANGE.search(low)
    if m:
        a, b = [int(g) for g in m.groups() if g]
        out.update(year_min=min(a, b), year_max=max(a, b))
    elif _ANY_YEAR.search(low):
        lower = _YEAR_MIN.search(low)
        upper = _YEAR_MAX.search(low)
        if lower:
            out["year_min"] = int(lower.group(1) or lower.group(2))
        if upper:
            out["year_max"] = int(upper.group(1) or upper.group(2))
        if not lower and not upper and "year_min" not in out:
            single = _SINGLE_YEAR.search(low)
            if single:
                out["year_min"] = out["year_max"] = int(single.group(1) or single.group(2))
    # prices: ranges, then upper and lower bounds
    m = _PRICE_RANGE.search(low)
    if m:
        a = float(m.group(1) or m.group(4))
        b = _amount(m, 2) if m.group(1) else _amount(m, 5)
        out.update(price_min=min(a, b), price_max=max(a, b))
    else:
        upper = _PRICE_MAX.search(low)
        lower = _PRICE_MIN.search(low)
        if upper:
            out["price_max"] = _amount(upper, 1) if (upper.group(1) or upper.group(2)) else _amount(upper, 3)
        if lower:
            out["price_min"] = _amount(lower, 1) if (lower.group(1) or lower.group(2)) else _amount(lower, 3)
    return {key: value for key, value in out.items() if math.isfinite(value)}  # "under 999...9 (400 digits) dollars" is not a price


# --- categories ruled out: "no horror", "not a musical", "without romance", "anything but sci-fi" --
_NEGATION = re.compile(
    r"\b(?:no|not|without|except|excluding|anything but|nothing|avoid|skip|(?:don't|do not|dont) (?:want|like))\s+"
    r"(?!(?:but|only|just|other|matter|doubt|better|less|sooner)\b)"  # "nothing but comedy", "not only action": wanted, not ruled out
    r"(?:(?:a|an|the|any|more|too much)\s+)?([a-z][a-z'-]{1,24})",
    re.IGNORECASE,
)
_NOT_CATEGORIES = {
    "more", "than", "older", "newer", "later", "earlier", "too", "very", "so", "one", "ones", "much", "many", "idea", "sure", "matter",
    "movie", "movies", "film", "films", "song", "songs", "track", "tracks", "thing", "things", "stuff", "please",
}


def rule_exclusions(text: str) -> list[str]:
    """The word each negation rules out ("no horror", "not a romantic one" → horror, romantic): the
    serving side keeps those that name one of the scene's categories (llmrec/serving/understanding.py)."""
    low = normalize_text(text[:RULE_SCAN_CHARS])[:RULE_SCAN_CHARS]
    out: list[str] = []
    for match in _NEGATION.finditer(low):
        word = match.group(1)
        if word not in _NOT_CATEGORIES and word not in out:
            out.append(word)
    return out[:MAX_TERMS]


def without_exclusions(text: str) -> str:
    """The text with what it rules out taken out ("a funny movie, not a romance" → "a funny movie,"):
    what retrieval embeds and matches. Embeddings do not read negation ("not a romance" is near
    romances, and near titles with "Not" in them); the exclusion filter handles it instead."""
    kept = _NEGATION.sub(" ", unicodedata.normalize("NFKC", text[:RULE_SCAN_CHARS]))
    return re.sub(r"\s+", " ", kept).strip() or text.strip()


def fallback_intent(text: str) -> Intent:
    """The intent without a model: the raw text as the query, and what the rules read in it."""
    constraints = ordered(rule_constraints(text))
    return Intent(query=text.strip()[:MAX_QUERY_CHARS], exclude=rule_exclusions(text), constraints=Constraints(**constraints), source="fallback")


def ordered(constraints: dict[str, Any]) -> dict[str, Any]:
    """Bounds given the wrong way round ("after 2000, before 1990") are swapped, not refused."""
    for low, high in (("year_min", "year_max"), ("price_min", "price_max")):
        if low in constraints and high in constraints and constraints[low] > constraints[high]:
            constraints[low], constraints[high] = constraints[high], constraints[low]
    return constraints
