"""`llmrec index build --ray`: embed a catalog with a Ray Data actor pool and publish a new index
version that the recommender loads, without touching the version it may be serving from.

Items are rendered exactly as the recommender renders them, embedded in parallel batches
(`map_batches` over `BatchEmbedder`, one serving Encoder per actor, on GPU where asked), indexed
per scene, saved as `versions/<version>/` under the recommender's index directory for this catalog
and encoder, and switched to with one atomic symlink swap (`llmrec.training.artifacts`). Each
scene's meta.json carries the recommender's cache key (catalog fingerprint, text version, encoder
id, dtype, sequence length, index kind), so the next Recommender start loads it as is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import PipelineConfig


@dataclass
class IndexJob:
    actors: int = 2
    batch_size: int = 256
    use_gpu: bool = False
    keep: int = 2


def _retriever_functions():
    """(catalog_fingerprint, index_dir): where the serving retriever keys and keeps its indexes."""
    try:
        from llmrec.serving.retriever import catalog_fingerprint, index_dir
    except ImportError:  # the recommender before its split into stages
        from llmrec.serving.recommender import catalog_fingerprint, index_dir
    return catalog_fingerprint, index_dir


def index_key(config: PipelineConfig, catalog) -> dict[str, Any]:
    """The key the retriever compares before reusing a saved index (Retriever._index_key)."""
    from llmrec.data.text import TEXT_VERSION

    catalog_fingerprint, _ = _retriever_functions()

    return {
        "catalog_fingerprint": catalog_fingerprint(catalog),
        "text_version": TEXT_VERSION,
        "encoder": config.encoder.model,
        "encoder_dtype": config.encoder.dtype,
        "encoder_max_seq_length": config.encoder.max_seq_length,
        "index_kind": config.index.kind,
        "index_exact_below": config.index.exact_below,
    }


def build_index(config: PipelineConfig, job: IndexJob | None = None) -> dict[str, Any]:
    from llmrec.data.catalog import load_catalog
    from llmrec.index.vector_index import VectorIndex
    from llmrec.training.artifacts import publish_version
    from llmrec.training.pairs import CatalogText
    from train.jobs import embed_with_ray, init_ray

    job = job or IndexJob()
    started = time.perf_counter()
    init_ray()
    catalog = load_catalog(config.catalog)
    text = CatalogText.of(catalog)
    frame = pd.DataFrame({"item_id": list(text.texts), "scene": [text.scenes[i] for i in text.texts], "text": list(text.texts.values())})
    embed_started = time.perf_counter()
    embedded = embed_with_ray(frame, config.encoder.model, config.encoder.max_seq_length, job.actors, job.use_gpu, job.batch_size)
    embed_seconds = time.perf_counter() - embed_started
    key = index_key(config, catalog)
    indexes, metadata = {}, {}
    for scene in catalog.scenes["scene"]:
        rows = embedded[embedded["scene"] == scene]
        index = VectorIndex(len(embedded["vector"].iloc[0]), config.index, expected_size=len(rows))
        if len(rows):
            index.upsert(rows["item_id"].tolist(), np.stack(rows["vector"].to_list()))
        indexes[scene] = index
        metadata[scene] = {"catalog": catalog.name, "scene": scene, **key}
    _, index_dir = _retriever_functions()
    root = index_dir(catalog.name, config.encoder.model)
    info = {"encoder": config.encoder.model, "catalog": catalog.name, "items": len(frame), "actors": job.actors, "use_gpu": job.use_gpu, "key": key}
    version = publish_version(root, indexes, metadata, info, keep=job.keep)
    seconds = time.perf_counter() - started
    return {
        "catalog": catalog.name,
        "encoder": config.encoder.model,
        "version": version.name,
        "path": str(root),
        "version_path": str(version),
        "indexes": {s: len(i) for s, i in indexes.items()},
        "items": len(frame),
        "embed_seconds": round(embed_seconds, 2),
        "items_per_s": round(len(frame) / embed_seconds, 1),
        "seconds": round(seconds, 1),
    }
