"""Microsoft News Dataset (MIND, https://msnews.github.io) read from the user's files.

`source` holds `news.tsv` and `behaviors.tsv` directly, or in subfolders, one per split, as MIND's
zips unpack (`train/`, `dev/`, `test/` or `MINDsmall_train/` ...); splits are merged and news read
once. Everything is one scene, `news`.

Decisions:
- Interactions are clicks only: every news id in a user's click history, and every impression
  labelled 1 (`N123-1`). Shown-but-not-clicked impressions (`N123-0`) are not interactions, and
  unlabelled ones (the test split's `N123`) are ignored. All ratings are 1.0.
- A click's timestamp is the time of the behaviour row showing it (the history holds clicks made
  before that row); one interaction per (user, news), the earliest kept. Times are read as UTC.
- Clicks on news missing from news.tsv are dropped: there is nothing to show for them.
- MIND has no publication dates: created_at is the first time the article was shown in an
  impression, 0 if never shown.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from llmrec.data.catalog import Catalog, attributes_json
from llmrec.errors import AssetError

FILES = ("news.tsv", "behaviors.tsv")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"  # 11/11/2019 9:05:58 AM
# MIND's category ids that are run-together words, spelled out for the scene description.
READABLE_CATEGORIES = {
    "foodanddrink": "food and drink",
    "middleeast": "Middle East",
    "northamerica": "North America",
    "tv": "TV",
}


def _splits(source: Path) -> list[Path]:
    """`source` itself when it holds the files, else each subfolder that does."""
    if any((source / f).is_file() for f in FILES):
        splits = [source]
    else:
        splits = sorted(d for d in source.glob("*/") if any((d / f).is_file() for f in FILES))
    if not splits:
        raise AssetError(
            f"{source} holds no MIND files: expected news.tsv and behaviors.tsv there, or in subfolders "
            "such as train/ and dev/ (as MINDsmall_train.zip and MINDsmall_dev.zip unpack)"
        )
    for split in splits:
        missing = [f for f in FILES if not (split / f).is_file()]
        if missing:
            raise AssetError(f"{split} lacks {' and '.join(missing)}: each MIND split needs news.tsv and behaviors.tsv")
    return splits


def _rows(path: Path, width: int) -> Iterator[list[str]]:
    """Exactly `width` tab-separated fields (short rows padded); no quoting: titles hold bare quotes."""
    with open(path, encoding="utf-8", newline="\n") as handle:
        for line in handle:
            if line.strip():
                yield (line.rstrip("\r\n").split("\t") + [""] * width)[:width]


def _seconds(time: str, path: Path) -> int:
    try:
        return int(datetime.strptime(time.strip(), TIME_FORMAT).replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise AssetError(f"{path} has time {time!r}, expected like 11/11/2019 9:05:58 AM") from None


def _keep_earliest(seen: dict, key: object, timestamp: int) -> None:
    if key not in seen or timestamp < seen[key]:
        seen[key] = timestamp


def _entity_labels(field: str) -> list[str]:
    labels = [entity.get("Label") for entity in json.loads(field)] if field else []
    return list(dict.fromkeys(label for label in labels if label))


def load(source: Path, name: str = "mind") -> Catalog:
    """MIND news and click logs, all splits under `source`, as a one-scene catalog."""
    splits = _splits(Path(source))
    news: dict[str, list[str]] = {}
    for split in splits:
        for news_id, *fields in _rows(split / "news.tsv", width=8):
            news.setdefault(news_id, fields)

    clicks: dict[tuple[str, str], int] = {}
    first_shown: dict[str, int] = {}
    for split in splits:
        path = split / "behaviors.tsv"
        for _, user_id, time, history, impressions in _rows(path, width=5):
            timestamp = _seconds(time, path)
            for news_id in history.split():
                _keep_earliest(clicks, (user_id, news_id), timestamp)
            for shown in impressions.split():
                news_id, _, label = shown.partition("-")
                _keep_earliest(first_shown, news_id, timestamp)
                if label == "1":
                    _keep_earliest(clicks, (user_id, news_id), timestamp)

    items = [
        {
            "item_id": news_id,
            "scene": "news",
            "title": title.strip() or news_id,
            "text": abstract.strip(),
            "attributes": attributes_json(
                {"category": category, "subcategory": subcategory, "entities": _entity_labels(title_entities)}
            ),
            "created_at": first_shown.get(news_id, 0),
        }
        for news_id, (category, subcategory, title, abstract, _, title_entities, _) in news.items()
    ]
    interactions = pd.DataFrame(
        [(user, news_id, 1.0, timestamp) for (user, news_id), timestamp in clicks.items() if news_id in news],
        columns=["user_id", "item_id", "rating", "timestamp"],
    ).sort_values("timestamp", kind="stable")
    categories = Counter(fields[0] for fields in news.values() if fields[0])
    topics = ", ".join(READABLE_CATEGORIES.get(c, c) for c, _ in categories.most_common())
    scene = {
        "scene": "news",
        "name": "News",
        "description": f"News articles to read from Microsoft News (MSN): {topics}.",
    }
    return Catalog(
        name=name,
        scenes=pd.DataFrame([scene]),
        items=pd.DataFrame(items, columns=["item_id", "scene", "title", "text", "attributes", "created_at"]),
        users=pd.DataFrame({"user_id": interactions["user_id"].unique(), "attributes": "{}"}),
        interactions=interactions,
    )
