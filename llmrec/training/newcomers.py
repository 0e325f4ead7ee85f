"""Train a scene's newcomer model (llmrec/serving/newcomers.py) on its interactions in time order.

Each training user is one example per epoch: their profile values and their first n interactions
(n drawn from 0, 1, 3 and 5) as input, everything after their fifth as the target distribution of
one softmax over the scene's items. Fitted with Adam, L2 on the input vectors; a tenth of the users
is held out, and the epoch kept is the one with the best NDCG@20 on them (the revealed items
removed, every n counted), as the cold-user protocol scores it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.catalog import Catalog
from llmrec.serving.context import MAX_PROFILE_VALUES, Vocabulary, profile_values
from llmrec.serving.newcomers import CLICKS, NewcomerModel
from llmrec.training.context import capped_vocabulary, catalog_profiles

STEPS = (0, 1, 3, 5)  # clicks revealed to an example: the cold-user protocol's steps
DIM = 64
L2 = 1e-5
LEARNING_RATE = 3e-3
BATCH = 256
MAX_EPOCHS = 30
PATIENCE = 8
HELD_OUT = 0.1
MAX_HELD_OUT = 2000  # users the epochs are judged on: enough to choose one, bounded at any catalog size
MAX_ITEMS = 50_000  # the most interacted items the softmax spans: memory per batch stays bounded; the rest rank lowest
K = 20


def sequences_in_time_order(interactions: pd.DataFrame) -> dict[str, list[str]]:
    """Each user's distinct items, first interaction first (ties in time by item id, as the cold-user protocol orders them)."""
    ordered = interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable").drop_duplicates(["user_id", "item_id"])
    return {user: group.tolist() for user, group in ordered.groupby("user_id")["item_id"]}


def fit_newcomer_model(
    interactions: pd.DataFrame, profiles: Mapping[str, Mapping[str, Any]], dim: int = DIM, seed: int = 0, held_out: Collection[str] | None = None
) -> NewcomerModel | None:
    """A newcomer model from (user_id, item_id, timestamp) rows, its epoch chosen on `held_out`
    users (default: a tenth of them, at most MAX_HELD_OUT); None with under 20 users who have more
    than CLICKS interactions (nothing to learn what comes after the first ones from)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    kept = interactions["item_id"].value_counts().index[:MAX_ITEMS]
    items = Vocabulary(sorted(kept))
    sequences = {u: items.rows(s) for u, s in sequences_in_time_order(interactions[interactions["item_id"].isin(kept)]).items()}
    users = sorted(u for u, s in sequences.items() if len(s) > CLICKS)
    if len(users) < 20:
        return None
    profile = capped_vocabulary((profile_values(profiles.get(u, {})) for u in users), MAX_PROFILE_VALUES)
    width = max(len(profile_values(profiles.get(u, {}))) for u in users) or 1
    if held_out is None:
        held = set(rng.choice(users, size=min(MAX_HELD_OUT, max(2, int(len(users) * HELD_OUT))), replace=False).tolist())
    else:
        held = set(held_out) & set(users)
        if not held:
            raise ValueError(f"no held-out user has more than {CLICKS} interactions to choose an epoch on")
    n_items = len(items)

    def batch(chosen: list[str], steps: list[int]) -> tuple[torch.Tensor, ...]:
        values = np.zeros((len(chosen), width), np.int64)
        clicks = np.zeros((len(chosen), CLICKS), np.int64)
        targets = np.zeros((len(chosen), n_items), np.float32)
        for row, (user, n) in enumerate(zip(chosen, steps)):
            found = profile.rows(profile_values(profiles.get(user, {})))[:width]
            values[row, : len(found)] = found
            sequence = sequences[user]
            clicks[row, :n] = sequence[:n]
            targets[row, sequence[CLICKS:]] = 1.0
        return torch.from_numpy(values), torch.from_numpy(clicks), torch.from_numpy(targets)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.profile = torch.nn.Embedding(len(profile), dim, padding_idx=0)
            self.clicks = torch.nn.Embedding(n_items, dim, padding_idx=0)
            self.items = torch.nn.Embedding(n_items, dim)
            self.item_bias = torch.nn.Parameter(torch.zeros(n_items))
            for module in (self.profile, self.clicks, self.items):
                torch.nn.init.normal_(module.weight, 0.0, 0.01)
            for module in (self.profile, self.clicks):
                module.weight.data[0] = 0.0

        def forward(self, values, clicks):
            count = (clicks > 0).sum(dim=1, keepdim=True)
            taste = self.profile(values).sum(dim=1) + self.clicks(clicks).sum(dim=1) / count.clamp(min=1)
            return taste @ self.items.weight.T + self.item_bias

    model = Model()
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    train_users = [u for u in users if u not in held]
    check = [(u, n) for u in sorted(held) for n in STEPS]
    discount = 1.0 / torch.log2(torch.arange(2, K + 2, dtype=torch.float32))

    def held_out_ndcg() -> float:
        """Mean NDCG@K over the held-out users at every step, the revealed items (and the unknown row) never answers."""
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(check), BATCH):
                values, clicks, targets = batch(*(list(part) for part in zip(*check[start : start + BATCH])))
                scores = model(values, clicks)
                scores.scatter_(1, clicks, float("-inf"))
                scores[:, 0] = float("-inf")
                top = scores.topk(K, dim=1).indices
                ideal = torch.cumsum(discount, 0)[targets.sum(dim=1).clamp(max=K).long() - 1]
                total += float(((targets.gather(1, top) * discount).sum(dim=1) / ideal).sum())
        return total / len(check)

    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    history = []
    for epoch in range(MAX_EPOCHS):
        model.train()
        order = rng.permutation(len(train_users))
        for start in range(0, len(order), BATCH):
            chosen = [train_users[n] for n in order[start : start + BATCH]]
            values, clicks, targets = batch(chosen, rng.choice(STEPS, size=len(chosen)).tolist())
            log_p = torch.log_softmax(model(values, clicks), dim=1)
            loss = -(log_p * targets).sum(dim=1).div(targets.sum(dim=1)).mean()
            loss = loss + L2 * (model.profile(values).pow(2).sum() + model.clicks(clicks).pow(2).sum()) / len(chosen)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        ndcg = held_out_ndcg()
        history.append(round(ndcg, 4))
        if ndcg > best[0]:
            best = (ndcg, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch + 1 - best[1] >= PATIENCE:
            break
    state = {name.removesuffix(".weight"): value.numpy() for name, value in best[2].items()}
    card = {
        f"held_out_ndcg@{K}": round(best[0], 4),
        "epochs": best[1],
        f"held_out_ndcg@{K}_by_epoch": history,
        "users": len(users),
        "held_out_users": len(held),
        "dim": dim,
        "l2": L2,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return NewcomerModel(items, profile, {name: state[name] for name in ("profile", "clicks", "items", "item_bias")}, card)


def train_newcomers(interactions: pd.DataFrame, catalog: Catalog) -> dict[str, NewcomerModel]:
    """Per scene of the catalog, a newcomer model on that scene's interactions (scenes with too few users get none)."""
    profiles = catalog_profiles(catalog)
    rows = interactions.merge(catalog.items[["item_id", "scene"]], on="item_id")
    models = {scene: fit_newcomer_model(group, profiles) for scene, group in rows.groupby("scene")}
    return {scene: model for scene, model in models.items() if model is not None}
