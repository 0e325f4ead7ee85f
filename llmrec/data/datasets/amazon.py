"""Amazon Reviews 2023 (McAuley lab, https://amazon-reviews-2023.github.io) read from the user's files.

The source directory holds, per category, a reviews file `<Category>.jsonl` and a metadata file
`meta_<Category>.jsonl`, either of them possibly gzipped (`.jsonl.gz`). Each category is one scene.

Decisions:
- Items are keyed by parent_asin, so reviews of a product's colours and sizes count for one product.
- A product reviewed but absent from the metadata is kept (its reviews still teach who likes what):
  its title is the parent_asin, its text is empty and its attributes say `"no_metadata": true`.
- Products with metadata but no reviews are kept: they are the cold-start items.
- A product listed in several categories belongs to the first category in name order; reviews from
  the other categories still count for it.
- One interaction per (user, product): the earliest review wins, which also drops the duplicated
  lines the dumps contain. Reviews without user, parent_asin or rating are skipped.
- created_at is the product's "Date First Available" detail where it parses, else 0.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.data.catalog import Catalog, attributes_json
from llmrec.data.datasets.jsonl import json_lines
from llmrec.errors import AssetError

MAX_TEXT_CHARS = 2000
SCENE_EXAMPLES = 8
SUFFIXES = (".jsonl.gz", ".jsonl")
EXPECTED = "<Category>.jsonl and meta_<Category>.jsonl (or .jsonl.gz), e.g. All_Beauty.jsonl and meta_All_Beauty.jsonl"


def _scene_id(category: str) -> str:
    """'All_Beauty' → 'all_beauty': lower case, every run of other characters one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")


def _category_files(source: Path, categories: list[str] | None) -> dict[str, dict[str, Path]]:
    """Category name → {'reviews': path, 'meta': path} (either may be absent), in name order."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(source.iterdir()) if source.is_dir() else []:
        stem = next((path.name[: -len(s)] for s in SUFFIXES if path.name.endswith(s)), None)
        if stem:
            kind, category = ("meta", stem[len("meta_") :]) if stem.startswith("meta_") else ("reviews", stem)
            found.setdefault(category, {})[kind] = path
    if not found:
        raise AssetError(f"{source} holds no Amazon Reviews 2023 files: expected {EXPECTED}")
    if categories is not None:
        wanted = {_scene_id(c): c for c in categories}
        missing = [c for s, c in wanted.items() if s not in {_scene_id(f) for f in found}]
        if missing:
            raise AssetError(f"{source} has no files for categories {missing}: expected {EXPECTED}; found {sorted(found)}")
        found = {c: paths for c, paths in found.items() if _scene_id(c) in wanted}
    return dict(sorted(found.items()))


def _price(value: Any) -> Any:
    """A float where the dump's price parses as one ('$1,299.00' too); other text is kept as written."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return float(text.lstrip("$").replace(",", ""))
    except ValueError:
        return None if text == "None" else text


def _first_available(details: Any) -> int:
    text = details.get("Date First Available") if isinstance(details, dict) else None
    try:
        return int(datetime.strptime(text, "%B %d, %Y").replace(tzinfo=UTC).timestamp())
    except (TypeError, ValueError):
        return 0


def _item(row: dict[str, Any], scene: str, no_metadata: bool = False) -> dict[str, Any]:
    parts = [*(row.get("description") or []), *(row.get("features") or [])]
    text = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    attributes = {
        "store": row.get("store"),
        "price": _price(row.get("price")),
        "categories": row.get("categories") or [],
        "average_rating": row.get("average_rating"),
        "rating_number": row.get("rating_number"),
        "main_category": row.get("main_category"),
        "no_metadata": no_metadata or None,
    }
    return {
        "item_id": row["parent_asin"],
        "scene": scene,
        "title": (row.get("title") or "").strip() or row["parent_asin"],
        "text": text[:MAX_TEXT_CHARS].rstrip(),
        "attributes": attributes_json(attributes),
        "created_at": _first_available(row.get("details")),
    }


def _scene(category: str, subcategories: Counter[str]) -> dict[str, str]:
    """Name from the file name; the description adds the most common sub-categories, for routing."""
    name = category.replace("_", " ")
    examples = [c for c, _ in subcategories.most_common(SCENE_EXAMPLES)]
    such_as = f", such as {', '.join(examples)}" if examples else ""
    return {"scene": _scene_id(category), "name": name, "description": f"{name} products sold on Amazon{such_as}."}


def load(source: Path, name: str = "amazon-reviews-2023", categories: list[str] | None = None) -> Catalog:
    """Every category found in `source` (or only `categories`, matched by name or scene id) as one catalog."""
    files = _category_files(Path(source), categories)
    items: dict[str, dict[str, Any]] = {}
    scenes = []
    # All metadata first, so a product reviewed in one category but described in another keeps its metadata.
    for category, paths in files.items():
        subcategories: Counter[str] = Counter()
        for row in json_lines(paths["meta"]) if "meta" in paths else []:
            if row.get("parent_asin") and row["parent_asin"] not in items:
                items[row["parent_asin"]] = _item(row, _scene_id(category))
                subcategories.update((row.get("categories") or [])[1:])  # the first level is the category itself
        scenes.append(_scene(category, subcategories))

    earliest: dict[tuple[str, str], tuple[int, float]] = {}
    for category, paths in files.items():
        for row in json_lines(paths["reviews"]) if "reviews" in paths else []:
            user_id, item_id, rating = row.get("user_id"), row.get("parent_asin"), row.get("rating")
            if not user_id or not item_id or rating is None:
                continue
            if item_id not in items:
                items[item_id] = _item({"parent_asin": item_id}, _scene_id(category), no_metadata=True)
            timestamp = int(row.get("timestamp") or 0) // 1000  # milliseconds in the dumps
            if (user_id, item_id) not in earliest or timestamp < earliest[user_id, item_id][0]:
                earliest[user_id, item_id] = (timestamp, float(rating))

    frame = pd.DataFrame(
        [(user, item, rating, timestamp) for (user, item), (timestamp, rating) in earliest.items()],
        columns=["user_id", "item_id", "rating", "timestamp"],
    ).sort_values("timestamp", kind="stable")
    return Catalog(
        name=name,
        scenes=pd.DataFrame(scenes),
        items=pd.DataFrame(list(items.values()), columns=["item_id", "scene", "title", "text", "attributes", "created_at"]),
        users=pd.DataFrame({"user_id": frame["user_id"].unique(), "attributes": "{}"}),
        interactions=frame,
    )
