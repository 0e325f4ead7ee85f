"""The context model: how likely a user is to like an item in the context a request arrives from.

A context is where a request comes from: an app surface, an audience, a scenario (the
Scenario-Wise Rec protocol's age groups). One model per scene learns from every context and keeps
a few parts per context, as STAR does (a shared weight scaled element-wise by a context's own):

    logit = b + b_c + b_u + b_i + b_ci + g_i·(Σ_v X_v + X_c) + (p_u ⊙ (1 + w_c))·(q_i + g_i C)

with u the user, i the item, c the context, g_i the item's category values (e.g. genres, scaled to
sum 1), X_v a profile value's preference over categories (gender=F, occupation=artist) and C the
categories' factors. A user, item or context it was not trained on adds nothing of its own: a new
item is scored through its categories, a new user through their profile, a request without a
known context by the shared parts alone. Trained by `llmrec/training/context.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import AssetError
from llmrec.serving.arrays import READ_ERRORS, check_shapes, load_arrays, save_arrays

CONTEXT_FORMAT = 1
MAX_PROFILE_VALUES = 100  # a profile attribute with more distinct values (a zip code) is not a feature
VOCABULARIES = ("users", "items", "categories", "profile", "contexts")
ARRAYS = ("user_bias", "item_bias", "context_bias", "context_item_bias", "users", "items", "categories", "context_scale", "profile_taste", "context_taste")


def profile_values(profile: Mapping[str, Any]) -> list[str]:
    """A profile's scalar values as features, "key=value"."""
    return [f"{key}={value}" for key, value in profile.items() if isinstance(value, (str, int, float, bool))]


def category_values(attributes: Mapping[str, Any]) -> list[str]:
    """An item's list attribute values (genres), "key=value": the same values the category pull reads."""
    return [f"{key}={value}" for key, values in attributes.items() if isinstance(values, list) for value in values if isinstance(value, str)]


@dataclass
class Vocabulary:
    """Names → rows; row 0 is "unknown" and holds zeros in every array."""

    names: list[str]

    def __post_init__(self) -> None:
        self.row = {name: n + 1 for n, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names) + 1

    def rows(self, names: Sequence[str | None]) -> np.ndarray:
        return np.array([self.row.get(name, 0) if name is not None else 0 for name in names], dtype=np.int64)


@dataclass
class ContextModel:
    """One scene's context model: its vocabularies and learned arrays (see the module docstring)."""

    users: Vocabulary
    items: Vocabulary
    categories: Vocabulary
    profile: Vocabulary
    contexts: Vocabulary
    bias: float
    arrays: dict[str, np.ndarray]
    card: dict[str, Any] = field(default_factory=dict)

    def knows(self, context: str | None) -> bool:
        return context is not None and context in self.contexts.row

    def category_matrix(self, item_categories: Sequence[Sequence[str]]) -> np.ndarray:
        """Items x category rows, each item's row summing to 1 over the values the model knows."""
        out = np.zeros((len(item_categories), len(self.categories)), np.float32)
        for n, values in enumerate(item_categories):
            rows = [r for r in self.categories.rows(values) if r]
            if rows:
                out[n, rows] = 1.0 / len(rows)
        return out

    def logits(self, user_id: str | None, profile: Mapping[str, Any], item_ids: Sequence[str], item_categories: Sequence[Sequence[str]], context: str | None) -> np.ndarray:
        """One user's logit for each item in `context` (None or unknown: the shared parts alone)."""
        a = self.arrays
        u = int(self.users.rows([user_id])[0])
        c = int(self.contexts.rows([context])[0])
        items = self.items.rows(item_ids)
        genres = self.category_matrix(item_categories)
        values = [r for r in self.profile.rows(profile_values(profile)) if r]
        taste = a["profile_taste"][values].sum(axis=0) + a["context_taste"][c]
        item_vectors = a["items"][items] + genres @ a["categories"]
        user_vector = a["users"][u] * (1.0 + a["context_scale"][c])
        return (
            self.bias + a["context_bias"][c] + a["user_bias"][u] + a["item_bias"][items] + a["context_item_bias"][c, items]
            + genres @ taste + item_vectors @ user_vector
        ).astype(np.float32)

    def probabilities(self, user_id: str | None, profile: Mapping[str, Any], item_ids: Sequence[str], item_categories: Sequence[Sequence[str]], context: str | None) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(user_id, profile, item_ids, item_categories, context)))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """What each array's shape must be for these vocabularies (a file that disagrees is refused)."""
        u, i, g, p, c = (len(v) for v in (self.users, self.items, self.categories, self.profile, self.contexts))
        d = self.arrays["users"].shape[1] if self.arrays["users"].ndim == 2 else -1
        return {
            "user_bias": (u,), "item_bias": (i,), "context_bias": (c,), "context_item_bias": (c, i), "users": (u, d), "items": (i, d),
            "categories": (g, d), "context_scale": (c, d), "profile_taste": (p, g), "context_taste": (c, g),
        }  # fmt: skip

    def save(self, path: Path) -> Path:
        meta = {"format": CONTEXT_FORMAT, "bias": self.bias, **{name: getattr(self, name).names for name in VOCABULARIES}, "card": self.card}
        return save_arrays(path, meta, self.arrays)

    @classmethod
    def load(cls, path: Path) -> ContextModel:
        try:
            meta, arrays = load_arrays(path, ARRAYS, CONTEXT_FORMAT)
            model = cls(**{name: Vocabulary(meta[name]) for name in VOCABULARIES}, bias=float(meta["bias"]), arrays=arrays, card=meta.get("card", {}))
            check_shapes(arrays, model.shapes())
        except READ_ERRORS as error:
            raise AssetError(f"context model {path}: {error}; train it again with `llmrec train ranker --context-attribute`") from error
        return model
