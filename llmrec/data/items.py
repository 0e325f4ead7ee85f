"""The item table every stage keeps: the catalog's items plus the stored changes since.

The Retriever and the ranking stage each hold one (in a cluster they run in different processes),
and both follow the same change log, so they agree on what exists.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llmrec.data.catalog import Catalog
from llmrec.data.store import ItemChange
from llmrec.data.text import render_item
from llmrec.serving.schemas import Filters, ItemIn

NEW_ITEM_SECONDS = 30 * 24 * 3600
_OPAQUE_ID = ("m.", "g.")  # Freebase ids: facts pointing at them say nothing to a language model


@dataclass
class ItemRecord:
    item_id: str
    scene: str
    title: str
    text: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        return render_item(self.scene, self.title, self.attributes, self.text, self.facts)

    def is_recent(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.created_at < NEW_ITEM_SECONDS


def items_from_catalog(catalog: Catalog) -> dict[str, ItemRecord]:
    facts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for item_id, relation, obj in catalog.kg.itertuples(index=False):
        if not obj.startswith(_OPAQUE_ID):
            facts[item_id].append((relation, obj))
    return {
        row.item_id: ItemRecord(row.item_id, row.scene, row.title, row.text, json.loads(row.attributes), int(row.created_at), facts.get(row.item_id, []))
        for row in catalog.items.itertuples(index=False)
    }


def item_text(item: ItemIn) -> str:
    """What the encoder embeds for an item sent by a client (the same text the catalog's items get)."""
    return render_item(item.scene, item.title, item.attributes, item.text)


def record_from_change(change: ItemChange) -> ItemRecord:
    return ItemRecord(change.item_id, change.scene, change.title, change.text, change.attributes or {}, change.created_at)


def _comparable(value: Any) -> Any:
    """Numbers compare as numbers (10 == 10.0), everything else as lower-case text (`_shares`
    inlines the plain-string case)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return str(value).lower()


def _value_sets(attributes: dict[str, Any]) -> list[tuple[str, frozenset[Any]]]:
    return [(key, frozenset(_comparable(v) for v in (values if isinstance(values, list) else [values]))) for key, values in attributes.items()]


def _shares(have: Any, values: frozenset[Any]) -> bool:
    """The item's attribute value is one of `values` (a list attribute: any of its values is)."""
    if have is None:
        return False
    return any((value.lower() if type(value) is str else _comparable(value)) in values for value in (have if isinstance(have, list) else [have]))


def compile_filters(filters: Filters) -> Callable[[dict[str, Any]], bool] | None:
    """The filters as one predicate over an item's attributes, or None when they constrain nothing.

    The wanted values are lower-cased into sets once, here; matching an item then costs a set
    lookup per attribute value it has, whatever the number of wanted values.
    """
    wanted = _value_sets(filters.attributes)
    unwanted = _value_sets(filters.exclude_attributes)
    ranges = [(key, bounds.min, bounds.max) for key, bounds in filters.ranges.items()]
    if not wanted and not unwanted and not ranges:
        return None

    def matches(attributes: dict[str, Any]) -> bool:
        for key, accepted in wanted:
            if not _shares(attributes.get(key), accepted):
                return False
        for key, refused in unwanted:
            if _shares(attributes.get(key), refused):
                return False
        for key, low, high in ranges:
            value = attributes.get(key)
            if not isinstance(value, (int, float)):
                return False
            if (low is not None and value < low) or (high is not None and value > high):
                return False
        return True

    return matches


def allow_filter(items: dict[str, ItemRecord], excluded: Iterable[str], filters: Filters) -> Callable[[str], bool]:
    """A predicate over item ids: not excluded, known, in the shortlist if there is one, and matching
    the filters (compiled once, here)."""
    excluded = set(excluded)
    if filters.item_ids:
        shortlist = set(filters.item_ids)

        def known(i: str) -> bool:
            return i in shortlist and i in items
    else:
        known = items.__contains__
    matches = compile_filters(filters)
    if matches is None:
        return lambda i: i not in excluded and known(i)
    return lambda i: i not in excluded and known(i) and matches(items[i].attributes)
