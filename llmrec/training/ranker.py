"""`llmrec train ranker`: learn the served blend's weights per scene and kind of request.

The training examples come from the served Ranker itself: for each request, the candidates that
`Ranker.candidates` gives (every signal the blend reads) and which of them the user went on to
choose. Weights are fitted by coordinate ascent on NDCG@k (starting from the single best signal,
so the blend is never worse on its training examples than its best part), then MMR's lambda. The
same fit serves `llmrec eval` (llmrec/evaluation/served.py) on a protocol's validation users and
this command on a catalog's own interactions (each held-out user's last interactions).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import PipelineConfig
from llmrec.data.catalog import Catalog
from llmrec.serving.blend import SIGNALS, TrainedBlend, Weights, blend_table, mmr
from llmrec.serving.context import ContextModel
from llmrec.serving.recommender import Recommender
from llmrec.serving.schemas import RecommendRequest
from llmrec.training.context import catalog_categories, catalog_profiles, fit_context_model
from llmrec.training.newcomers import train_newcomers

STEPS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
MMR_LAMBDAS = (1.0, 0.95, 0.9, 0.85)
FEW_STEPS = (1, 3, 5)  # liked items revealed to a "few" request


@dataclass
class Example:
    """One request's candidates as the served Ranker sees them, and which were chosen."""

    scene: str
    mode: str
    item_ids: list[str]
    table: np.ndarray  # candidates x SIGNALS, raw
    vectors: np.ndarray
    relevant: np.ndarray  # bool per candidate
    n_relevant: int  # every target, retrieved or not (the ideal DCG counts them all)
    request: int  # position of its request in what `collect` was given


def collect(recommender: Recommender, requests: Sequence[RecommendRequest], targets: Sequence[set[str]]) -> list[Example]:
    """The served Ranker's candidates for each request (no free text), embedded in one batch.

    These are the steps of `Pipeline.recommend` for a request without a query and of
    `Ranker.recommend` (prepare, embed the taste text, route, propose, retrieve, candidates), called
    directly and without deadlines; tests hold the blend of these tables to the served order."""
    ranker = recommender.ranker
    contexts = [ranker.prepare(r) for r in requests]
    texts = [c.text for c in contexts]
    with_text = [n for n, t in enumerate(texts) if t]
    encoded = recommender.encoder.encode([texts[n] for n in with_text]) if with_text else np.zeros((0, 1), np.float32)
    vectors: list[np.ndarray | None] = [None] * len(requests)
    for row, n in enumerate(with_text):
        vectors[n] = encoded[row]
    examples = []
    for position, (request, context, vector, wanted) in enumerate(zip(requests, contexts, vectors, targets)):
        scene = ranker.router.route(request.scene, None, None, context.history_scenes).scene
        extra = ranker.users.candidate_ids(scene, context, request.filters, bool(request.query) and vector is not None)
        text = ranker.users.lexical_text(scene, context, request.query)
        retrieved = ranker.retriever.search(scene, vector, ranker.config.rerank.candidates, context.excluded, request.filters, extra, text)
        pool, history, mode = ranker.candidates(scene, request, context, retrieved)
        if not pool:
            continue
        relevant = np.array([c.item_id in wanted for c in pool], dtype=bool)
        examples.append(Example(scene, mode, retrieved.item_ids, np.array([c.signals() for c in pool], np.float64), retrieved.vectors, relevant, len(wanted), position))
    return examples


def _ideal(n_relevant: int, k: int) -> float:
    return float(np.sum(1.0 / np.log2(np.arange(2, min(n_relevant, k) + 2))))


class _Tables:
    """Examples padded into one array, each signal min-max scaled per example as `blend_table` does."""

    def __init__(self, examples: Sequence[Example], k: int) -> None:
        width = max(len(e.table) for e in examples)
        self.k = min(k, width)
        self.scaled = np.zeros((len(examples), width, len(SIGNALS)))
        self.valid = np.zeros((len(examples), width), dtype=bool)
        self.gain = np.zeros((len(examples), width))
        for row, e in enumerate(examples):
            table = e.table
            low, span = table.min(axis=0), np.ptp(table, axis=0)
            self.scaled[row, : len(table)] = np.where(span > 1e-12, (table - low) / np.where(span > 1e-12, span, 1.0), 0.0)
            self.valid[row, : len(table)] = True
            self.gain[row, : len(table)] = e.relevant
        self.ideal = np.array([_ideal(e.n_relevant, k) for e in examples])
        self.discount = 1.0 / np.log2(np.arange(2, self.k + 2))

    def ndcg(self, weights: dict[str, float]) -> float:
        vector = np.array([weights.get(s, 0.0) for s in SIGNALS])
        scores = np.where(self.valid, self.scaled @ vector / (vector.sum() or 1.0), -np.inf)
        top = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        dcg = (np.take_along_axis(self.gain, top, axis=1) * self.discount).sum(axis=1)
        return float(np.mean(np.where(self.ideal > 0, dcg / np.maximum(self.ideal, 1e-12), 0.0)))


def ascend(signals: Sequence[str], value: Callable[[dict[str, float]], float], passes: int = 2) -> tuple[dict[str, float], float]:
    """Coordinate ascent over blend weights: start from the single best signal (so the blend is never
    worse than its best part), then try each other signal's weight over STEPS, keeping what helps."""
    alone = {s: value({s: 1.0}) for s in signals}
    start = max(alone, key=alone.get)
    weights, best = {s: float(s == start) for s in signals}, alone[start]
    for _ in range(passes):
        for signal in signals:
            if signal == start:
                continue
            for step in STEPS:
                trial = {**weights, signal: step}
                result = value(trial)
                if result > best + 1e-6:
                    weights, best = trial, result
    return {s: w for s, w in weights.items() if w}, best


def fit_weights(examples: Sequence[Example], k: int) -> tuple[dict[str, float], float]:
    """Blend weights that maximise mean NDCG@k over the examples."""
    return ascend(SIGNALS, _Tables(examples, k).ndcg)


def ndcg_of(examples: Sequence[Example], weights: dict[str, float], mmr_lambda: float, k: int) -> float:
    """Mean NDCG@k of the served order (blend, then MMR) over the examples."""
    values = []
    for e in examples:
        order = mmr(blend_table(e.table, weights), e.vectors, k, mmr_lambda)
        dcg = float(np.sum(e.relevant[order] / np.log2(np.arange(2, len(order) + 2))))
        ideal = _ideal(e.n_relevant, k)
        values.append(dcg / ideal if ideal else 0.0)
    return float(np.mean(values)) if values else 0.0


def fit_blend(examples: Sequence[Example], k: int, card: dict[str, Any] | None = None, lambdas: Sequence[float] = MMR_LAMBDAS) -> TrainedBlend:
    """Weights and MMR lambda per (scene, mode) present in the examples, with their training NDCG in the card."""
    scenes: dict[str, dict[str, Weights]] = defaultdict(dict)
    fitted: dict[str, dict[str, Any]] = defaultdict(dict)
    for (scene, mode), group in _by_group(examples).items():
        weights, _ = fit_weights(group, k)
        by_lambda = {lam: ndcg_of(group, weights, lam, k) for lam in lambdas}
        lam = max(by_lambda, key=by_lambda.get)
        scenes[scene][mode] = Weights(weights, lam, True)
        fitted[scene][mode] = {"examples": len(group), f"ndcg@{k}": round(by_lambda[lam], 4), "weights": weights, "mmr_lambda": lam}
    return TrainedBlend(dict(scenes), {**(card or {}), "fitted": dict(fitted)})


# ---- `llmrec train ranker` on a catalog's own interactions -------------------------------------


def holdout(interactions: pd.DataFrame, users: int, seed: int = 42, min_interactions: int = 10, target_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, targets): for `users` users drawn at random among those with enough interactions,
    their last `target_fraction` in time order become targets and leave the interactions."""
    counts = interactions.groupby("user_id").size()
    eligible = np.sort(counts[counts >= min_interactions].index.to_numpy())
    chosen = set(np.random.default_rng(seed).choice(eligible, size=min(users, len(eligible)), replace=False).tolist()) if len(eligible) else set()
    ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    position = ordered.groupby("user_id").cumcount()
    size = ordered["user_id"].map(counts)
    is_target = ordered["user_id"].isin(chosen) & (position >= np.ceil(size * (1 - target_fraction)))
    return ordered[~is_target], ordered[is_target]


def training_requests(
    kept: pd.DataFrame, targets: pd.DataFrame, profiles: dict[str, dict[str, Any]], scene_of: dict[str, str]
) -> tuple[list[RecommendRequest], list[set[str]], list[str]]:
    """Per held-out user and scene: the user by id (history mode), a few first liked items without
    the id, with the profile half of the time (few mode), and the profile alone (profile mode), each
    with the same targets; and whose request each is."""
    requests, wanted, owners = [], [], []
    history = kept.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id")["item_id"].agg(list).to_dict()
    rng = np.random.default_rng(7)
    for (user, scene), group in targets.assign(scene=targets["item_id"].map(scene_of)).groupby(["user_id", "scene"]):
        in_scene = [i for i in history.get(user, []) if scene_of.get(i) == scene]
        seen = {"exclude_item_ids": in_scene[:1000]}
        batch = [RecommendRequest(user_id=user, scene=scene)]
        few = in_scene[: int(rng.choice(FEW_STEPS))]
        if few:  # half with the profile, half clicks alone
            profile = profiles.get(user, {}) if rng.random() < 0.5 else {}
            batch.append(RecommendRequest(history=few, profile=profile, scene=scene, filters=seen))
        if profiles.get(user):
            batch.append(RecommendRequest(profile=profiles[user], scene=scene, filters=seen))
        requests += batch
        wanted += [set(group["item_id"])] * len(batch)
        owners += [user] * len(batch)
    return requests, wanted, owners


def _by_group(examples: Sequence[Example]) -> dict[tuple[str, str], list[Example]]:
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for e in examples:
        groups[(e.scene, e.mode)].append(e)
    return dict(sorted(groups.items()))


def train_contexts(kept: pd.DataFrame, catalog: Catalog, attribute: str, positive_rating: float, min_rows: int = 1000) -> dict[str, ContextModel]:
    """Per scene, a context model on the scene's rated interactions (a like: rating ≥ `positive_rating`),
    each in the context of its user's profile `attribute` (e.g. age group), 10% of each label held out
    to stop on. Scenes with fewer than `min_rows` rated interactions, or under 10 of either label, get none."""
    profiles, categories = catalog_profiles(catalog), catalog_categories(catalog)
    rows = kept.dropna(subset=["rating"]).merge(catalog.items[["item_id", "scene"]], on="item_id")
    rows = rows.assign(label=(rows["rating"] >= positive_rating).astype(np.int8), context=rows["user_id"].map(lambda u: _context_of(profiles.get(u, {}), attribute)))
    models = {}
    for scene, group in rows.groupby("scene"):
        if len(group) < min_rows or group["label"].value_counts().reindex([0, 1], fill_value=0).min() < 10:
            continue
        held = group.groupby("label").sample(frac=0.1, random_state=0)  # both labels in each part: AUC needs them
        in_scene = {i: categories.get(i, []) for i in group["item_id"].unique()}
        models[scene] = fit_context_model(group.drop(held.index), held, profiles, in_scene)
        models[scene].card |= {"context_attribute": attribute, "contexts": models[scene].contexts.names}
    return models


def _context_of(profile: dict[str, Any], attribute: str) -> str | None:
    value = profile.get(attribute)
    return None if value is None else str(value)


def train_ranker(
    config: PipelineConfig,
    catalog: Catalog,
    output: Path,
    users: int = 1000,
    k: int = 10,
    modes: Sequence[str] = ("history", "few", "profile"),
    context_attribute: str | None = None,
    newcomers: bool = False,
) -> dict[str, Any]:
    """Hold out `users` users' last interactions and serve the rest; fit the blend on half of the
    held-out users and compare NDCG@k of the default and the trained weights on the other half; then
    save the blend fitted on all of them to `output` (ranker.json, its card included), except for the
    modes where the trained weights lost that comparison and those not in `modes`: they keep the
    configured defaults. With `context_attribute`, each scene's context model is trained first (the
    contexts: that profile attribute's values) and is one of the signals the blend is fitted on, each
    training request in its user's context. With `newcomers`, each scene's newcomer model is trained
    first too, and is one more signal."""
    kept, targets = holdout(catalog.interactions, users)
    scene_of = dict(zip(catalog.items["item_id"], catalog.items["scene"]))
    profiles = catalog_profiles(catalog)
    requests, wanted, owners = training_requests(kept, targets, profiles, scene_of)
    contexts = train_contexts(kept, catalog, context_attribute, config.rerank.positive_rating) if context_attribute else {}
    newcomer_models = train_newcomers(kept, catalog) if newcomers else {}
    if context_attribute:
        requests = [r.model_copy(update={"context": _context_of(profiles.get(owner, {}), context_attribute)}) for r, owner in zip(requests, owners)]
    served = Catalog(catalog.name, catalog.scenes, catalog.items, catalog.users, kept, catalog.kg)
    with tempfile.TemporaryDirectory(prefix="llmrec-ranker-") as state:
        local = config.model_copy(deep=True)
        local.store.url = f"sqlite:///{Path(state) / 'state.db'}"
        local.rerank.model = None
        local.intent.backend = "none"  # the training requests carry no free text
        recommender = Recommender(local, served)
        recommender.ranker.blend.trained = TrainedBlend({}, {}, contexts, newcomer_models)
        examples = collect(recommender, requests, wanted)
    checked = set(sorted(set(owners))[1::2])
    probe = fit_blend([e for e in examples if owners[e.request] not in checked], k)
    report: dict[str, Any] = {}
    for (scene, mode), group in _by_group([e for e in examples if owners[e.request] in checked]).items():
        trained = probe.scenes.get(scene, {}).get(mode)
        default = recommender.ranker.blend.weights(scene, mode, True, mode != "profile")
        report.setdefault(scene, {})[mode] = {
            "examples": len(group),
            f"ndcg@{k} default": round(ndcg_of(group, default.signals, default.mmr_lambda, k), 4),
            f"ndcg@{k} trained": round(ndcg_of(group, trained.signals, trained.mmr_lambda, k), 4) if trained else None,
        }
    kept_defaults = sorted(
        f"{scene}/{mode}"
        for scene, by_mode in report.items()
        for mode, r in by_mode.items()
        if mode not in modes or r[f"ndcg@{k} trained"] is None or r[f"ndcg@{k} trained"] < r[f"ndcg@{k} default"]
    )
    card = {
        "catalog": catalog.name,
        "encoder": config.encoder.model,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "held_out_users": len(set(owners)),
        "k": k,
        "held_out_check": report,
        "kept_defaults": kept_defaults,
        "context_models": {scene: m.card for scene, m in contexts.items()},
        "newcomer_models": {scene: m.card for scene, m in newcomer_models.items()},
    }
    model = fit_blend(examples, k, card)
    model.contexts, model.newcomers = contexts, newcomer_models
    for name in kept_defaults:  # weights not asked for, or that lost to the defaults on the users they were not fitted on, are not served
        scene, mode = name.split("/")
        model.scenes.get(scene, {}).pop(mode, None)
    model.save(output)
    return {
        "output": str(output),
        "examples": len(examples),
        "check": report,
        "fitted": model.card["fitted"],
        "kept_defaults": kept_defaults,
        "context_models": card["context_models"],
        "newcomer_models": card["newcomer_models"],
    }
