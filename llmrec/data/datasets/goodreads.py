"""UCSD Goodreads (https://mengtingwan.github.io/data/goodreads) read from the user's files.

`source` holds `goodreads_books*.json` (the full file or genre subsets such as
`goodreads_books_poetry.json`) and `goodreads_interactions*.json`, plain or gzipped (`.json.gz`),
and optionally `goodreads_book_authors.json` to show author names. Everything is one scene, `books`.

Decisions:
- An interaction is a shelving that says something: rated (rating 1-5) or marked read. Books only
  put on a shelf such as to-read are skipped. Read but unrated books keep rating 0.0, so 0 means
  "read, no rating" and never a low rating.
- One interaction per (user, book), the earliest date_added kept; timestamps in UTC seconds.
- Interactions with books absent from the books files are dropped (common with genre subsets).
- The shelves attribute is the 5 most popular shelves, leaving out Goodreads' reading-status
  shelves (to-read, currently-reading, read), which say nothing about the book.
- created_at is the publication date (seconds, negative before 1970), 0 when the year is unknown.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.data.catalog import Catalog, attributes_json
from llmrec.data.datasets.jsonl import json_lines
from llmrec.errors import AssetError

MAX_TEXT_CHARS = 2000
TOP_SHELVES = 5
SCENE_EXAMPLES = 10
STATUS_SHELVES = {"to-read", "currently-reading", "read"}
DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"  # Thu Jan 05 02:44:22 -0800 2017


def _files(source: Path, prefix: str) -> list[Path]:
    return sorted(p for p in source.glob(f"{prefix}*") if p.name.endswith((".json", ".json.gz")))


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """The dumps write numbers as strings, '' when unknown."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _published(row: dict[str, Any]) -> int:
    year, month, day = (_number(row.get(f"publication_{part}"), int) for part in ("year", "month", "day"))
    try:
        return int(datetime(year, month or 1, day or 1, tzinfo=UTC).timestamp())
    except (TypeError, ValueError):
        return 0


def _shelves(row: dict[str, Any]) -> list[str]:
    shelves = [s for s in row.get("popular_shelves") or [] if s.get("name") not in STATUS_SHELVES]
    shelves.sort(key=lambda s: _number(s.get("count"), int) or 0, reverse=True)
    return [s["name"] for s in shelves[:TOP_SHELVES]]


def _item(row: dict[str, Any], authors: dict[str, str]) -> dict[str, Any]:
    book_id = str(row["book_id"])
    author_ids = [str(a.get("author_id")) for a in row.get("authors") or [] if a.get("author_id")]
    attributes = {
        "authors": [authors.get(a, a) for a in author_ids],
        "year": _number(row.get("publication_year"), int),
        "publisher": row.get("publisher"),
        "language": row.get("language_code"),
        "num_pages": _number(row.get("num_pages"), int),
        "shelves": _shelves(row),
        "average_rating": _number(row.get("average_rating"), float),
    }
    return {
        "item_id": book_id,
        "scene": "books",
        "title": (row.get("title") or row.get("title_without_series") or "").strip() or book_id,
        "text": (row.get("description") or "").strip()[:MAX_TEXT_CHARS].rstrip(),
        "attributes": attributes_json(attributes),
        "created_at": _published(row),
    }


def _seconds(date: Any) -> int:
    try:
        return int(datetime.strptime(date, DATE_FORMAT).timestamp())
    except (TypeError, ValueError):
        return 0


def load(source: Path, name: str = "goodreads") -> Catalog:
    """Goodreads books and their readers' shelvings under `source` as a one-scene catalog."""
    source = Path(source)
    book_files, interaction_files = _files(source, "goodreads_books"), _files(source, "goodreads_interactions")
    if not book_files or not interaction_files:
        raise AssetError(
            f"{source} lacks Goodreads files: expected goodreads_books*.json and goodreads_interactions*.json "
            "(or .json.gz), e.g. goodreads_books_poetry.json.gz and goodreads_interactions_poetry.json.gz"
        )
    authors = {
        str(row["author_id"]): row["name"]
        for path in _files(source, "goodreads_book_authors")
        for row in json_lines(path)
        if row.get("author_id") and row.get("name")
    }

    items: dict[str, dict[str, Any]] = {}
    shelf_counts: Counter[str] = Counter()
    for path in book_files:
        for row in json_lines(path):
            if row.get("book_id") and str(row["book_id"]) not in items:
                items[str(row["book_id"])] = _item(row, authors)
                shelf_counts.update(_shelves(row))

    earliest: dict[tuple[str, str], tuple[int, float]] = {}
    for path in interaction_files:
        for row in json_lines(path):
            rating, is_read = float(row.get("rating") or 0), row.get("is_read") is True
            key = (str(row.get("user_id") or ""), str(row.get("book_id") or ""))
            if (rating <= 0 and not is_read) or not key[0] or key[1] not in items:
                continue
            timestamp = _seconds(row.get("date_added") or row.get("date_updated"))
            if key not in earliest or timestamp < earliest[key][0]:
                earliest[key] = (timestamp, rating)

    interactions = pd.DataFrame(
        [(user, book, rating, timestamp) for (user, book), (timestamp, rating) in earliest.items()],
        columns=["user_id", "item_id", "rating", "timestamp"],
    ).sort_values("timestamp", kind="stable")
    shelves = ", ".join(s for s, _ in shelf_counts.most_common(SCENE_EXAMPLES))
    scene = {
        "scene": "books",
        "name": "Books",
        "description": f"Books to read, from Goodreads: {shelves}." if shelves else "Books to read, from Goodreads.",
    }
    return Catalog(
        name=name,
        scenes=pd.DataFrame([scene]),
        items=pd.DataFrame(list(items.values()), columns=["item_id", "scene", "title", "text", "attributes", "created_at"]),
        users=pd.DataFrame({"user_id": interactions["user_id"].unique(), "attributes": "{}"}),
        interactions=interactions,
    )
