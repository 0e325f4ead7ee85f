"""Run a protocol over named models: tune on validation, fit, rank the test users, score them.

Model names: `llmrec`, the served recommender (llmrec/evaluation/served.py: the packaged MiniLM,
or the encoder given with `encoder_dir`, and the cross-encoder given with `reranker_dir`),
`llmrec-profiled`, the same over the catalog with the LLM profiles of its book joined (those that
`llmrec profile` wrote for the catalog's items: llmrec/profiling), and the
baselines: random, popularity, demographic (popularity among users sharing the profile's values), itemknn, ease, bpr, tfidf, zero-shot (the packaged MiniLM),
finetuned (the encoder given with `encoder_dir`), hybrid-zero-shot and hybrid-finetuned (an
offline blend of nine signals over that encoder, llmrec/evaluation/hybrid.py), hybrid: whichever
hybrid variant is best on validation, and hybrid-rerank: that hybrid with its head rescored by the
cross-encoder given with `reranker_dir`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.data.catalog import Catalog
from llmrec.errors import LLMRecError
from llmrec.evaluation.baselines import (
    BPR,
    EASE,
    DemographicPopularity,
    Embedder,
    EncoderRanker,
    ItemKNN,
    Model,
    Popularity,
    Random,
    TfIdf,
)
from llmrec.evaluation.cross import CrossReranked
from llmrec.evaluation.hybrid import Hybrid
from llmrec.evaluation.protocols import RankingSetup
from llmrec.evaluation.served import Served
from llmrec.evaluation.tasks import evaluate, metric_specs, top_k

PACKAGED_ENCODER = "all-MiniLM-L6-v2"
BASELINES: dict[str, type[Model]] = {
    "random": Random,
    "popularity": Popularity,
    "demographic": DemographicPopularity,
    "itemknn": ItemKNN,
    "ease": EASE,
    "bpr": BPR,
    "tfidf": TfIdf,
}
ENCODER_MODELS = ("zero-shot", "finetuned", "hybrid-zero-shot", "hybrid-finetuned", "hybrid", "hybrid-rerank")
RANKING_MODELS = ("llmrec", "llmrec-profiled", *BASELINES, *ENCODER_MODELS)


@dataclass
class Run:
    """One protocol run: per model its test metrics, what tuning chose, and its top-k lists."""

    protocol: str
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: list[tuple[str, str, str, int, float]] = field(default_factory=list)


class Models:
    """Builds models by name, sharing one Embedder per encoder so each catalog is embedded once."""

    def __init__(self, encoder_dir: str | None, reranker_dir: str | None = None, catalog: Catalog | None = None) -> None:
        if encoder_dir and not Path(encoder_dir).is_dir():
            raise LLMRecError(f"--encoder {encoder_dir} is not a directory: give a sentence-transformers model directory")
        if reranker_dir and not Path(reranker_dir).is_dir():
            raise LLMRecError(f"--reranker {reranker_dir} is not a directory: give the output of `llmrec train reranker`")
        self.encoder_dir = encoder_dir
        self.reranker_dir = reranker_dir
        self.catalog = catalog
        self.embedders: dict[str, Embedder] = {}
        self.profiled_items = 0  # how many items llmrec-profiled saw with a profile

    def profiled_catalog(self) -> Catalog:
        """The protocol's catalog with the profiles in its book joined (the book the packaged profiling model writes)."""
        from llmrec.config import ProfilingConfig
        from llmrec.profiling.book import book_path, read_profiles
        from llmrec.profiling.catalog import with_profiles

        book = book_path(self.catalog.name, ProfilingConfig().model)
        catalog, joined = with_profiles(self.catalog, read_profiles(book))
        if not joined:
            raise LLMRecError(f"model 'llmrec-profiled': no profile in {book} fits {self.catalog.name}'s items: write them with `llmrec profile --catalog {self.catalog.name}`")
        self.profiled_items = joined
        return catalog

    def embedder(self, variant: str) -> Embedder:
        spec = PACKAGED_ENCODER if variant == "zero-shot" else str(self.encoder_dir)
        return self.embedders.setdefault(spec, Embedder(spec))

    def variants(self, name: str) -> list[str]:
        """'hybrid' stands for every hybrid variant this run can build (the best is kept)."""
        if name not in RANKING_MODELS:
            raise LLMRecError(f"unknown model {name!r}; choose from {', '.join(RANKING_MODELS)}")
        if name.endswith("finetuned") and not self.encoder_dir:
            raise LLMRecError(f"model {name!r} needs --encoder DIR (a sentence-transformers model directory)")
        if name == "hybrid-rerank" and not self.reranker_dir:
            raise LLMRecError("model 'hybrid-rerank' needs --reranker DIR (the output of `llmrec train reranker`)")
        if name != "hybrid":
            return [name]
        return ["hybrid-zero-shot"] + (["hybrid-finetuned"] if self.encoder_dir else [])

    def build(self, name: str, first: Model | None = None) -> Model:
        """A fresh model; `hybrid-rerank` wraps `first`, the tuned hybrid variant."""
        if name in ("llmrec", "llmrec-profiled"):
            if self.catalog is None:
                raise LLMRecError(f"the served model {name!r} needs the protocol's catalog")
            return Served(name, self.catalog if name == "llmrec" else self.profiled_catalog(), self.encoder_dir, self.reranker_dir)
        if name == "hybrid-rerank":
            from llmrec.serving.cross_encoder import CrossReranker

            return CrossReranked(name, first, CrossReranker(str(self.reranker_dir)))
        if name in BASELINES:
            return BASELINES[name]()
        if name in ("zero-shot", "finetuned"):
            return EncoderRanker(name, self.embedder(name))
        return Hybrid(name, self.embedder(name.removeprefix("hybrid-")))  # hybrid-zero-shot, hybrid-finetuned


def check_names(names: list[str], encoder_dir: str | None, reranker_dir: str | None = None, catalog: Catalog | None = None) -> Models:
    """The model factory for a run, once every name is known to be buildable (before any work)."""
    models = Models(encoder_dir, reranker_dir, catalog)
    for name in names:
        models.variants(name)
    return models


def run_ranking(setup: RankingSetup, names: list[str], encoder_dir: str | None = None, reranker_dir: str | None = None) -> Run:
    """Tune each model on validation (never test), fit it on the final training data, rank the test
    query users and compute the protocol's metrics. With several test query sets (cold-user steps)
    each metric is reported per set as 'metric (set)'."""
    models, run = check_names(names, encoder_dir, reranker_dir, setup.catalog), Run(setup.name)
    specs = metric_specs(setup.metrics)
    tuned: dict[str, tuple[Model, float, float]] = {}

    def tune(variant: str) -> tuple[Model, float, float]:
        if variant not in tuned:
            first = None
            if variant == "hybrid-rerank":  # rescores the best hybrid variant, tuned first
                first = max((tune(v) for v in models.variants("hybrid")), key=lambda t: t[1])[0]
            started = time.perf_counter()
            model = models.build(variant, first)
            value = model.tune(setup.tune_train, setup.valid, specs[0])
            if setup.train is not setup.tune_train:
                model.fit(setup.train)
            tuned[variant] = (model, value, time.perf_counter() - started)
        return tuned[variant]

    for name in names:
        best = max(models.variants(name), key=lambda v: tune(v)[1])
        model, value, fit_seconds = tuned[best]
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        for queries in setup.test:
            scores = model.score(queries)
            ranked = top_k(scores, queries, setup.k)
            found = evaluate(queries, ranked, specs)
            suffix = f" ({queries.name})" if len(setup.test) > 1 else ""
            metrics.update({f"{metric}{suffix}": value for metric, value in found.items()})
            label = f"{name}@{queries.name}" if len(setup.test) > 1 else name
            for user, row, items in zip(queries.user_ids, scores, ranked):
                run.predictions += [
                    (label, user, str(setup.items.ids[item]), rank, float(row[item])) for rank, item in enumerate(items, 1)
                ]
        run.results[name] = metrics
        run.details[name] = {
            "variant": best,
            "params": dict(model.params),
            "blend_weights": getattr(model, "blend_weights", None),
            **({"profiled_items": models.profiled_items} if name == "llmrec-profiled" else {}),
            f"validation {specs[0][0]}": round(value, 4),
            "fit_seconds": round(fit_seconds, 1),
            "score_seconds": round(time.perf_counter() - started, 1),
        }
    return run
