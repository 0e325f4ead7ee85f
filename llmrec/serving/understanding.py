"""The parsed request applied to the routed scene: what the intent says becomes filters and references.

- years and prices stated in the request (the intent's constraints) → `filters.ranges` on the
  scene's `year` and `price` attributes, where its items carry them; a range the request sets
  itself wins;
- categories ruled out ("no horror", the intent's `exclude`) → `filters.exclude_attributes` on the
  scene's list attributes (genres) whose values they name;
- an item the request names ("a thriller like Se7en") → a reference: it is never recommended, its
  vector joins the query's, and it counts as liked, so the collaborative signals answer "people
  who liked Seven (Se7en) also liked this";
- the categories the request reads like, in any language the encoder reads ("一部载歌载舞的歌舞片"
  reads like Musical) → its vector is pulled toward them (`CategoryPull`), so retrieval and the
  semantic signal favour the scene's musicals although no title or word of theirs matches.

A scene's titles and categories are read from its items once per change of the item table.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from llmrec.data.items import ItemRecord
from llmrec.data.text import render_item
from llmrec.intent.rules import without_exclusions
from llmrec.intent.schema import Intent
from llmrec.serving.schemas import Filters, Range

CONSTRAINT_RANGES = {"year": ("year_min", "year_max"), "price": ("price_min", "price_max")}
MAX_REFERENCES = 3
MAX_TRIGGERS = 20  # "like" written 100 times is looked at 20 times
MAX_TITLE_WORDS = 10
MAX_CATEGORY_VALUES = 200  # a list attribute with more distinct values is not a set of categories
PREFIX = 5  # "romantic" names Romance, "comedies" Comedy: the first letters agree

# Words of a title or a request; CJK characters are not part of one ("像Se7en那样" names Se7en).
_WORD = re.compile(r"[^\W_\u3000-\u9fff\uac00-\ud7af]+")
_ARTICLES = {"the", "a", "an"}
_TRIGGER = re.compile(
    r"\b(?:like|similar to|such as|in the vein of|reminds? me of|along the lines of|the likes of|same as|as good as)\b|像|类似于?",
    re.IGNORECASE,
)
# "I'd like", "movies you like": "like" as a verb names no item
_VERB_SUBJECTS = {"i", "d", "we", "you", "they", "he", "she", "would", "really", "also", "might", "do", "dont", "don", "t", "to", "should", "could"}


def _words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(unicodedata.normalize("NFKC", text)))


def title_keys(title: str) -> list[str]:
    """The ways a request may write a title: "Seven (Se7en)" → "seven", "se7en"; "Seventh Seal, The
    (Sjunde inseglet, Det)" → "seventh seal", "sjunde inseglet det"; leading articles dropped."""
    main = re.sub(r"\s*\([^)]*\)", "", title)
    out = []
    for part in [main, *re.findall(r"\(([^)]*)\)", title)]:
        words = [m.group().lower() for m in _words(part)]
        if words and words[0] in _ARTICLES:
            words = words[1:]
        if len(words) >= 2 and words[-1] in _ARTICLES and "," in part:
            words = words[:-1]
        if 0 < len(words) <= MAX_TITLE_WORDS:
            out.append(" ".join(words))
    return out


def _names(term: str, value: str) -> bool:
    return term == value or term.rstrip("s") == value or (len(term) >= PREFIX and len(value) >= PREFIX and term[:PREFIX] == value[:PREFIX])


@dataclass
class SceneFacts:
    """What a request can name in one scene."""

    titles: dict[str, list[str]] = field(default_factory=dict)  # title key → item ids
    numeric: set[str] = field(default_factory=set)  # attributes that hold numbers (year, price)
    categories: dict[str, set[str]] = field(default_factory=dict)  # list attribute → its values

    @classmethod
    def of(cls, records: Iterable[ItemRecord]) -> SceneFacts:
        titles: dict[str, list[str]] = defaultdict(list)
        numeric: set[str] = set()
        categories: dict[str, set[str]] = defaultdict(set)
        for record in records:
            if record.title.count(" ") < 2 * MAX_TITLE_WORDS:  # longer titles cannot be named whole
                for key in title_keys(record.title):
                    titles[key].append(record.item_id)
            for name, value in record.attributes.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    numeric.add(name)
                elif isinstance(value, list):
                    categories[name].update(v for v in value if isinstance(v, str))
        kept = {name: values for name, values in categories.items() if 0 < len(values) <= MAX_CATEGORY_VALUES}
        return cls(dict(titles), numeric, kept)

    def categories_named(self, terms: Iterable[str]) -> dict[str, list[str]]:
        """The category values the terms name, per attribute ("comedies" → genres: Comedy)."""
        out: dict[str, list[str]] = defaultdict(list)
        for term in terms:
            term = term.lower().strip()
            for name, values in self.categories.items():
                for value in values:
                    if _names(term, value.lower()) and value not in out[name]:
                        out[name].append(value)
        return dict(out)

    def references(self, text: str) -> list[tuple[list[str], tuple[int, int]]]:
        """The items the text (NFKC-normalised) names after "like", "similar to", ... : for each,
        the ids of the items with that title, and where the title stands. The longest title wins.
        A one-word title counts only when written with a capital or quoted (Heat, "heat", not heat),
        and none after a lower-case "a"/"an" ("like a love story" is a kind of film, not *Love Story*). Linear in
        the text: the words are found once, and at most MAX_TRIGGERS triggers are looked at."""
        words = list(_WORD.finditer(text))
        starts = [w.start() for w in words]
        found: list[tuple[list[str], tuple[int, int]]] = []
        for checked, trigger in enumerate(_TRIGGER.finditer(text)):
            if len(found) >= MAX_REFERENCES or checked >= MAX_TRIGGERS:
                break
            at = bisect.bisect_left(starts, trigger.end())
            if trigger.group().lower() == "like" and at - 2 >= 0 and words[at - 2].group().lower() in _VERB_SUBJECTS:
                continue  # "I like", "you'd like": a verb
            after = words[at : at + MAX_TITLE_WORDS + 1]
            if not after or text[trigger.end() : after[0].start()].strip(" \"'“‘《「") != "":
                continue  # the title must follow the trigger directly
            first_word = after[0].group()
            if first_word in ("a", "an"):
                continue  # lower case: a kind of item ("like a love story"), not a title ("like A Simple Plan")
            if first_word.lower() in _ARTICLES:
                after = after[1:]
            match = self._longest_title(text, after)
            if match is not None:
                found.append(match)
        return found

    def _longest_title(self, text: str, words: list[re.Match[str]]) -> tuple[list[str], tuple[int, int]] | None:
        for n in range(min(len(words), MAX_TITLE_WORDS), 0, -1):
            key = " ".join(w.group().lower() for w in words[:n])
            ids = self.titles.get(key)
            if not ids:
                continue
            first = words[0]
            if n == 1 and (len(key) < 3 or not (first.group()[0].isupper() or first.group()[0].isdigit() or text[first.start() - 1 : first.start()] in "\"'“‘《「")):
                continue
            return ids, (first.start(), words[n - 1].end())
        return None


def category_texts(scene: str, categories: Mapping[str, set[str]]) -> dict[str, str]:
    """Each category value written as the scene writes an item that has only it ("Movie. Genres:
    Horror."): the text the encoder compares a request with, keyed "attribute=value"."""
    return {f"{name}={value}": render_item(scene, "", {name: [value]}) for name, values in sorted(categories.items()) for value in sorted(values)}


@dataclass(frozen=True)
class CategoryPull:
    """A scene's category values as the encoder reads them, for pulling a request toward those it reads like.

    Why: a request's words rarely match its genre's titles ("a light romantic comedy" in Chinese
    finds films with Chinese names, not romances), but they are close to the genre's name. The
    request is compared with every value's text (`category_texts`); a softmax at `temperature` over
    those similarities weighs the values' vectors, centred on their mean so that a request close to
    all of them alike moves little; the sum, scaled by `strength`, is added and the vector
    renormalised."""

    keys: tuple[str, ...]
    vectors: np.ndarray  # unit vectors of the texts, in the order of keys

    def pull(self, vector: np.ndarray, strength: float, temperature: float) -> np.ndarray:
        query = np.asarray(vector, dtype=np.float32).ravel()
        if strength <= 0 or len(self.keys) < 2:
            return query
        similarity = self.vectors @ query
        weights = np.exp((similarity - similarity.max()) / temperature)
        direction = (weights / weights.sum()) @ (self.vectors - self.vectors.mean(axis=0))
        pulled = query + strength * direction
        return (pulled / (np.linalg.norm(pulled) or 1.0)).astype(np.float32)


@dataclass
class Understood:
    """The request as the scene's retrieval and ranking take it."""

    filters: Filters
    references: list[str]  # ids of the items the request named
    lexical_query: str  # the query without what it rules out and without the named titles (BM25 would match their words)


def understand(facts: SceneFacts, filters: Filters, intent: Intent | None, query: str, popularity: Mapping[str, int]) -> Understood:
    """Apply the intent to the scene: ranges, exclusions and references (of several items with
    one title, the most interacted with)."""
    update: dict = {}
    if intent is not None and not filters.item_ids:  # a shortlist is ranked whole
        ranges = dict(filters.ranges)
        constraints = intent.constraints
        for attribute, (low, high) in CONSTRAINT_RANGES.items():
            bounds = getattr(constraints, low), getattr(constraints, high)
            chosen = attribute in ranges or attribute in filters.attributes  # the client's own filter wins
            if attribute in facts.numeric and not chosen and bounds != (None, None):
                ranges[attribute] = Range(min=bounds[0], max=bounds[1])
        if ranges != filters.ranges:
            update["ranges"] = ranges
        excluded = dict(filters.exclude_attributes)
        for attribute, values in facts.categories_named(intent.exclude).items():
            wanted = filters.attributes.get(attribute, [])
            wanted = {str(v).lower() for v in (wanted if isinstance(wanted, list) else [wanted])}
            values = [v for v in values if v.lower() not in wanted]  # what the client asks for is never ruled out
            have = excluded.get(attribute, [])
            merged = list(dict.fromkeys([*(have if isinstance(have, list) else [have]), *values]))
            if merged:
                excluded[attribute] = merged
        if excluded != filters.exclude_attributes:
            update["exclude_attributes"] = excluded
    references: list[str] = []
    text = unicodedata.normalize("NFKC", query)  # titles are found in the request as written
    for ids, (start, end) in reversed(facts.references(text)):
        references.insert(0, max(ids, key=lambda i: popularity.get(i, 0)))
        text = text[:start] + text[end:]
    lexical = without_exclusions(text) if text.strip() else ""
    return Understood(filters.model_copy(update=update) if update else filters, list(dict.fromkeys(references)), lexical)
