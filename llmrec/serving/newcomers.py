"""The newcomer model: what users who started like this one went on to choose.

A user known by a profile and a handful of interactions is the cold-user case. Popularity among
users who share the profile is a strong answer, and a few early clicks add little to it when they
are read item by item (co-occurrence, EASE). This model is trained on that exact task instead:
for each training user, their profile values and their first n interactions (n of 0, 1, 3 or 5)
predict everything they chose afterwards, through one softmax over the scene's items
(as YouTube's candidate model does with watches and demographics):

    h = Σ_v P_v + mean_{j in clicks} E_j          logit_i = h·Q_i + b_i

with P a profile value's vector (gender=F, age=25), E an item's vector as a click and Q, b its
vector and bias as an answer. A profile value or clicked item it was not trained with adds nothing;
an item it never saw scores as low as the lowest item it knows among those asked about. Trained by `llmrec/training/newcomers.py`;
its logit is the blend's `newcomer` signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import AssetError
from llmrec.serving.arrays import READ_ERRORS, check_shapes, load_arrays, save_arrays
from llmrec.serving.context import Vocabulary, profile_values

NEWCOMER_FORMAT = 1
CLICKS = 5  # the most recent distinct known items the model reads: it is trained on a user's first five at most
ARRAYS = ("profile", "clicks", "items", "item_bias")


@dataclass
class NewcomerModel:
    """One scene's newcomer model: its vocabularies and learned arrays (see the module docstring)."""

    items: Vocabulary
    profile: Vocabulary
    arrays: dict[str, np.ndarray]
    card: dict[str, Any] = field(default_factory=dict)

    def logits(self, profile: Mapping[str, Any], clicks: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """The user's logit for each item; an item the model never saw gets the lowest of the others."""
        a = self.arrays
        taste = a["profile"][self.profile.rows(profile_values(profile))].sum(axis=0)
        latest = list(dict.fromkeys(reversed(list(clicks))))  # each item once, the latest first, as training reads first interactions
        clicked = [r for r in self.items.rows(latest) if r][:CLICKS]
        if clicked:
            taste = taste + a["clicks"][clicked].mean(axis=0)
        rows = self.items.rows(item_ids)
        out = (a["items"][rows] @ taste + a["item_bias"][rows]).astype(np.float32)
        known = rows > 0
        out[~known] = out[known].min() if known.any() else 0.0
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """What each array's shape must be for these vocabularies (a file that disagrees is refused)."""
        i, p = len(self.items), len(self.profile)
        d = self.arrays["items"].shape[1] if self.arrays["items"].ndim == 2 else -1
        return {"profile": (p, d), "clicks": (i, d), "items": (i, d), "item_bias": (i,)}

    def save(self, path: Path) -> Path:
        return save_arrays(path, {"format": NEWCOMER_FORMAT, "items": self.items.names, "profile": self.profile.names, "card": self.card}, self.arrays)

    @classmethod
    def load(cls, path: Path) -> NewcomerModel:
        try:
            meta, arrays = load_arrays(path, ARRAYS, NEWCOMER_FORMAT)
            model = cls(Vocabulary(meta["items"]), Vocabulary(meta["profile"]), arrays, meta.get("card", {}))
            check_shapes(arrays, model.shapes())
        except READ_ERRORS as error:
            raise AssetError(f"newcomer model {path}: {error}; train it again with `llmrec train ranker --newcomers`") from error
        return model
