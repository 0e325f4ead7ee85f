"""Training pairs and the validation set, rendered exactly as serving renders them.

Item side: `render_item` (scene, title, attributes, description), so the scene is part of the input.
User side: `render_user` over the titles of the user's last liked items before the target (at most
`LIKED_TITLES`, as the recommender sends) and their profile, optionally led by a short request.
Only the interactions passed in are read: for MovieLens-1M that is the train part of the
cold-item split, so the cold items never appear in training, not even as negatives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.text import render_user

POSITIVE_RATING = 4.0  # the config's rerank.positive_rating: ratings at or above are likes
LIKED_TITLES = 10  # the recommender puts the user's last 10 liked titles in the user text
PROFILE_EXCLUDE = {"zip_code"}  # identifiers, not taste (the recommender leaves them out too)


def item_records(catalog) -> dict[str, Any]:
    """The serving item records (ItemRecord.render() is the text the index embeds)."""
    try:
        from llmrec.data.items import items_from_catalog
    except ImportError:  # the recommender before its split into stages
        from llmrec.serving.recommender import Recommender

        return Recommender._items_from(catalog)
    return items_from_catalog(catalog)


@dataclass
class CatalogText:
    """Every item's rendered text, title and attributes, and every user's profile."""

    texts: dict[str, str]
    titles: dict[str, str]
    attributes: dict[str, dict[str, Any]]
    scenes: dict[str, str]
    profiles: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, catalog) -> CatalogText:
        records = item_records(catalog)
        profiles = {u: json.loads(a) for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}
        return cls(
            texts={i: r.render() for i, r in records.items()},
            titles={i: r.title for i, r in records.items()},
            attributes={i: r.attributes for i, r in records.items()},
            scenes={i: r.scene for i, r in records.items()},
            profiles=profiles,
        )

    def user_text(self, user_id: str, liked: Sequence[str], request: str | None = None) -> str:
        profile = {k: v for k, v in self.profiles.get(user_id, {}).items() if k not in PROFILE_EXCLUDE}
        titles = [self.titles[i] for i in liked[-LIKED_TITLES:]]
        return render_user(query=request, liked_titles=titles, profile=profile)

    def request_text(self, item_id: str) -> str:
        """A short request the item answers, from its scene and category-like attributes."""
        attrs = self.attributes[item_id]
        kinds = attrs.get("genres") or attrs.get("category") or attrs.get("shelves") or []
        kinds = kinds if isinstance(kinds, list) else [kinds]
        scene = self.scenes[item_id]
        return f"{' and '.join(str(k) for k in kinds[:2])} {scene}s".strip() if kinds else f"a good {scene}"


def liked_in_order(interactions: pd.DataFrame, positive_rating: float = POSITIVE_RATING) -> dict[str, list[str]]:
    """Each user's liked items, oldest first (ties broken by item id, so the order is stable)."""
    liked = interactions[interactions["rating"] >= positive_rating]
    liked = liked.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return {u: g.tolist() for u, g in liked.groupby("user_id", sort=True)["item_id"]}


def encoder_pairs(
    text: CatalogText,
    interactions: pd.DataFrame,
    pairs_per_user: int = 8,
    max_pairs: int | None = None,
    request_fraction: float = 0.0,
    seed: int = 42,
    item_fraction: float = 0.0,
) -> pd.DataFrame:
    """(user text, liked item text) pairs: the target is a liked item, the user text is built from
    the items liked before it. With probability `item_fraction` the query side is instead the text
    of one item liked before the target (an item-to-item pair: users are also served as the mean
    of their items' vectors). Columns: user_id, item_id, user_text, item_text."""
    rng = np.random.default_rng(seed)
    rows = []
    for user_id, liked in liked_in_order(interactions).items():
        if len(liked) < 2:
            continue
        targets = rng.choice(np.arange(1, len(liked)), size=min(pairs_per_user, len(liked) - 1), replace=False)
        for position in sorted(targets.tolist()):
            item_id = liked[position]
            if rng.random() < item_fraction:
                query = text.texts[liked[int(rng.integers(max(0, position - LIKED_TITLES), position))]]
            else:
                request = text.request_text(item_id) if rng.random() < request_fraction else None
                query = text.user_text(user_id, liked[:position], request)
            rows.append((user_id, item_id, query, text.texts[item_id]))
    pairs = pd.DataFrame(rows, columns=["user_id", "item_id", "user_text", "item_text"])
    pairs = pairs.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return pairs.iloc[:max_pairs].reset_index(drop=True) if max_pairs else pairs


def seen_items(interactions: pd.DataFrame) -> dict[str, set[str]]:
    return {u: set(g.tolist()) for u, g in interactions.groupby("user_id")["item_id"]}


def random_unseen(item_id: str, ids: Sequence[str], user_seen: set[str], rng: np.random.Generator) -> str:
    """A random item of `ids` other than `item_id` that the user never interacted with (any item
    but `item_id` when the user has seen them all)."""
    while True:
        candidate = ids[int(rng.integers(len(ids)))]
        if candidate != item_id and (candidate not in user_seen or len(user_seen) >= len(ids) - 1):
            return candidate


def mine_hard_negatives(
    pairs: pd.DataFrame,
    item_ids: Sequence[str],
    vectors: np.ndarray,
    seen: Mapping[str, set[str]],
    depth: int = 30,
    skip: int = 3,
    seed: int = 42,
) -> list[str]:
    """One hard negative per pair: an item among the `depth` nearest neighbours of the positive
    (by `vectors`, the starting encoder's item embeddings), past the `skip` closest (likely
    near-duplicates or unlabelled positives), that the user never interacted with. Falls back to a
    random unseen item of the pool."""
    rng = np.random.default_rng(seed)
    ids = list(item_ids)
    position = {i: n for n, i in enumerate(ids)}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    wanted = sorted({position[i] for i in pairs["item_id"] if i in position})
    depth = min(depth, len(ids))
    neighbours: dict[int, np.ndarray] = {}
    for start in range(0, len(wanted), 1024):
        block = np.asarray(wanted[start : start + 1024])
        top = np.argsort(-(unit[block] @ unit.T), axis=1, kind="stable")[:, :depth]
        neighbours.update(zip(block.tolist(), top))
    negatives = []
    for user_id, item_id in zip(pairs["user_id"], pairs["item_id"]):
        user_seen = seen.get(user_id, set())
        pool = neighbours.get(position.get(item_id, -1), np.zeros(0, dtype=int))[skip:].tolist()
        rng.shuffle(pool)
        choice = next((ids[p] for p in pool if ids[p] != item_id and ids[p] not in user_seen), None)
        negatives.append(choice if choice is not None else random_unseen(item_id, ids, user_seen, rng))
    return negatives


def reranker_pairs(
    text: CatalogText,
    pairs: pd.DataFrame,
    item_ids: Sequence[str],
    seen: Mapping[str, set[str]],
    random_fraction: float = 1.0,
    seed: int = 42,
) -> pd.DataFrame:
    """(text_a, text_b, label) for the cross-encoder, half positive: each encoder pair gives its
    positive (1) and one negative (0): with probability `random_fraction` a random item of
    `item_ids` the user never interacted with, else its mined hard negative (column `negative_id`,
    needed only when `random_fraction` < 1). Random negatives by default: within a CPU budget they
    are what the cross-encoder learns from (docs/training.md, "The trained reranker": runs r2-r4)."""
    rng = np.random.default_rng(seed)
    ids = list(item_ids)
    rows = []
    for row in pairs.itertuples(index=False):
        rows.append((row.user_text, row.item_text, 1.0))
        if rng.random() < random_fraction:
            negative = random_unseen(row.item_id, ids, seen.get(row.user_id, set()), rng)
        else:
            negative = row.negative_id
        rows.append((row.user_text, text.texts[negative], 0.0))
    out = pd.DataFrame(rows, columns=["text_a", "text_b", "label"])
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@dataclass
class ValidationSet:
    """Users with liked cold items: their text (from training interactions only), the cold items
    they liked, and every cold candidate item with its text."""

    user_ids: list[str]
    user_texts: list[str]
    relevant: list[list[str]]
    item_ids: list[str]
    item_texts: list[str]
    name: str = "cold-valid"
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_ids)


def cold_validation_set(
    text: CatalogText,
    train: pd.DataFrame,
    cold: pd.DataFrame,
    cold_items: Sequence[str],
    max_users: int | None = 500,
    seed: int = 42,
    name: str = "cold-valid",
) -> ValidationSet:
    """Rank all `cold_items` for users who liked at least one of them; the user text is what the
    recommender would send for them given only `train`."""
    liked_train = liked_in_order(train)
    liked_cold = cold[cold["rating"] >= POSITIVE_RATING].groupby("user_id")["item_id"].agg(lambda s: sorted(set(s))).to_dict()
    users = sorted(liked_cold)
    if max_users and len(users) > max_users:
        users = sorted(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    items = sorted(cold_items)
    return ValidationSet(
        user_ids=users,
        user_texts=[text.user_text(u, liked_train.get(u, [])) for u in users],
        relevant=[liked_cold[u] for u in users],
        item_ids=items,
        item_texts=[text.texts[i] for i in items],
        name=name,
    )


def validation_label_pairs(validation: ValidationSet, negatives_per_positive: int = 3, seed: int = 42) -> pd.DataFrame:
    """Labelled (text_a, text_b, label) pairs from a validation set, for the reranker's AUC: each
    relevant cold item (1) and random cold items the user did not like (0)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user_text, relevant in zip(validation.user_texts, validation.relevant):
        good = set(relevant)
        others = [n for n, i in enumerate(validation.item_ids) if i not in good]
        for item_id in relevant[:5]:
            rows.append((user_text, validation.item_texts[validation.item_ids.index(item_id)], 1.0))
            for n in rng.choice(others, size=min(negatives_per_positive, len(others)), replace=False):
                rows.append((user_text, validation.item_texts[int(n)], 0.0))
    return pd.DataFrame(rows, columns=["text_a", "text_b", "label"])
