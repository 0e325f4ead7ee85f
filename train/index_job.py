"""`llmrec index build --ray`: embed a catalog with a Ray Data actor pool and publish a new index
version that the recommender loads, without touching the version it may be serving from.

Items are rendered exactly as the recommender renders them, embedded in parallel batches
(`map_batches` over `BatchEmbedder`, one serving Encoder per actor, on GPU where asked), indexed
per scene, saved as `versions/<version>/` under the recommender's index directory for this catalog
and encoder, and switched to with one atomic symlink swap (`llmrec.index.versions`). Each
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


def build_index(config: PipelineConfig, job: IndexJob | None = None) -> dict[str, Any]:
    from llmrec.data.catalog import load_catalog
    from llmrec.index.build import build_scene_indexes, index_dir, index_key
    from llmrec.index.versions import publish_version
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
    vectors = np.stack(embedded["vector"].to_list())
    indexes, metadata = build_scene_indexes(config, catalog, embedded["item_id"].tolist(), embedded["scene"].tolist(), vectors)
    key = index_key(config, catalog)
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
