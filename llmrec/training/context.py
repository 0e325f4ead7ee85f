"""Train a scene's context model (llmrec/serving/context.py) on labelled interactions.

Rows are (user_id, item_id, label, context): a label of 1 is a like (a rating at or above the
positive rating), 0 an interaction the user did not like. The model is fitted with Adam on the log
loss, with L2 on the user and item rows each batch reads (their factors and biases, and the
context-item biases; the few shared arrays go unpenalised), and stopped at the epoch with the best validation AUC; the
learned arrays are exported to numpy, which is all that serving reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from llmrec.data.catalog import Catalog
from llmrec.serving.context import MAX_PROFILE_VALUES, ContextModel, Vocabulary, category_values, profile_values
from llmrec.serving.understanding import MAX_CATEGORY_VALUES
from llmrec.serving.users import PROFILE_TEXT_EXCLUDE

DIM = 32
L2 = 1e-4
LEARNING_RATE = 2e-3
BATCH = 2048
MAX_EPOCHS = 20


def catalog_profiles(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Each user's profile as serving reads it (identifiers such as zip codes left out)."""
    return {u: {k: v for k, v in json.loads(a).items() if k not in PROFILE_TEXT_EXCLUDE} for u, a in zip(catalog.users["user_id"], catalog.users["attributes"])}


def catalog_categories(catalog: Catalog) -> dict[str, list[str]]:
    """Each item's category values, as serving reads them."""
    return {i: category_values(json.loads(a)) for i, a in zip(catalog.items["item_id"], catalog.items["attributes"])}


def capped_vocabulary(features: Iterable[Sequence[str]], cap: int) -> Vocabulary:
    """The "key=value" features seen, for keys with at most `cap` distinct values: a zip code or
    free-form tags are identifiers, not features (the rule the category pull reads categories by)."""
    values: dict[str, set[str]] = {}
    for found in features:
        for value in found:
            values.setdefault(value.split("=", 1)[0], set()).add(value)
    return Vocabulary(sorted(v for group in values.values() if len(group) <= cap for v in group))


def fit_context_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    profiles: Mapping[str, Mapping[str, Any]],
    item_categories: Mapping[str, Sequence[str]],
    dim: int = DIM,
    seed: int = 0,
) -> ContextModel:
    """A context model fitted on `train`, its epoch chosen by AUC on `valid` (contexts may be None)."""
    import torch

    torch.manual_seed(seed)
    started = time.perf_counter()
    users = Vocabulary(sorted(train["user_id"].unique()))
    items = Vocabulary(sorted(train["item_id"].unique()))
    categories = capped_vocabulary((item_categories.get(i, []) for i in set(train["item_id"])), MAX_CATEGORY_VALUES)
    profile = capped_vocabulary((profile_values(profiles.get(u, {})) for u in users.names), MAX_PROFILE_VALUES)
    contexts = Vocabulary(sorted(train["context"].dropna().unique()))
    shell = ContextModel(users, items, categories, profile, contexts, 0.0, {})
    every_item = sorted(set(train["item_id"]) | set(valid["item_id"]))
    genre_of = dict(zip(every_item, range(len(every_item))))
    genres = torch.from_numpy(shell.category_matrix([item_categories.get(i, []) for i in every_item]))
    width = max((len(profile_values(p)) for p in profiles.values()), default=0) or 1
    profile_rows = {u: shell.profile.rows(profile_values(profiles.get(u, {}))) for u in set(train["user_id"]) | set(valid["user_id"])}

    def tensors(rows: pd.DataFrame) -> tuple[list[torch.Tensor], torch.Tensor]:
        held = np.zeros((len(rows), width), np.int64)
        for n, user in enumerate(rows["user_id"]):
            found = profile_rows[user][:width]
            held[n, : len(found)] = found
        columns = (
            users.rows(rows["user_id"].tolist()),
            items.rows(rows["item_id"].tolist()),
            np.array([genre_of[i] for i in rows["item_id"]]),
            contexts.rows([c if isinstance(c, str) else None for c in rows["context"]]),
            held,
        )
        return [torch.from_numpy(np.asarray(c)) for c in columns], torch.from_numpy(rows["label"].to_numpy(np.float32))

    n_items = len(items)
    embedding = lambda n, d: torch.nn.Embedding(n, d, padding_idx=0)  # noqa: E731 (row 0, "unknown", stays zero)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_bias, self.item_bias = embedding(len(users), 1), embedding(n_items, 1)
            self.context_bias, self.context_item_bias = embedding(len(contexts), 1), embedding(len(contexts) * n_items, 1)
            self.users, self.items = embedding(len(users), dim), embedding(n_items, dim)
            self.categories = torch.nn.Parameter(torch.zeros(len(categories), dim))
            self.context_scale = embedding(len(contexts), dim)
            self.profile_taste, self.context_taste = embedding(len(profile), len(categories)), embedding(len(contexts), len(categories))
            self.bias = torch.nn.Parameter(torch.zeros(1))
            for module in (self.user_bias, self.item_bias, self.context_bias, self.context_item_bias, self.context_scale, self.profile_taste, self.context_taste):
                torch.nn.init.zeros_(module.weight)
            for module in (self.users, self.items):
                torch.nn.init.normal_(module.weight, 0.0, 0.01)
                module.weight.data[0] = 0.0

        def forward(self, u, i, g, c, p):
            pair = torch.where((c > 0) & (i > 0), c * n_items + i, torch.zeros_like(i))
            genre = genres[g]
            taste = self.profile_taste(p).sum(dim=1) + self.context_taste(c)
            item = self.items(i) + genre @ self.categories
            logit = self.bias + self.context_bias(c)[:, 0] + self.user_bias(u)[:, 0] + self.item_bias(i)[:, 0] + self.context_item_bias(pair)[:, 0]
            penalty = sum((t**2).sum() for t in (self.users(u), self.items(i), self.item_bias(i), self.user_bias(u), self.context_item_bias(pair)))
            return logit + (genre * taste).sum(dim=1) + (self.users(u) * (1 + self.context_scale(c)) * item).sum(dim=1), penalty

    x_train, y_train = tensors(train)
    x_valid, y_valid = tensors(valid)
    model = Model()
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    history = []
    for epoch in range(MAX_EPOCHS):
        model.train()
        order = torch.randperm(len(y_train))
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            logit, penalty = model(*(x[batch] for x in x_train))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y_train[batch]) + L2 * penalty / BATCH
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            auc = float(roc_auc_score(y_valid.numpy(), model(*x_valid)[0].numpy()))
        history.append(round(auc, 4))
        if auc > best[0]:
            best = (auc, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif auc < best[0] - 0.002 or epoch + 1 - best[1] >= 2:
            break
    state = {name.removesuffix(".weight"): value.numpy() for name, value in best[2].items()}
    arrays = {name: state[name] for name in ("users", "items", "categories", "context_scale", "profile_taste", "context_taste")}
    arrays |= {name: state[name][:, 0] for name in ("user_bias", "item_bias", "context_bias")}
    arrays["context_item_bias"] = state["context_item_bias"][:, 0].reshape(len(contexts), n_items)
    card = {
        "validation_auc": round(best[0], 4),
        "epochs": best[1],
        "validation_auc_by_epoch": history,
        "rows": len(train),
        "dim": dim,
        "l2": L2,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return ContextModel(users, items, categories, profile, contexts, float(state["bias"][0]), arrays, card)
