"""The one index key and build path: what a saved index was built from, and how a scene's index is made.

Serving (`Retriever`, on a cache miss) and the Ray Data job (`llmrec index build --ray`) both build
through `build_scene_indexes` and stamp each scene's meta.json with `index_key`, so either can load
what the other saved; an index is reused only when every part of its key matches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import PipelineConfig, llmrec_home
from llmrec.data.catalog import Catalog
from llmrec.data.text import TEXT_VERSION
from llmrec.index.vector_index import VectorIndex


def catalog_fingerprint(catalog: Catalog) -> str:
    """Changes whenever an item's indexed content changes."""
    digest = hashlib.sha256()
    for row in catalog.items[["item_id", "scene", "title", "text", "attributes"]].itertuples(index=False):
        digest.update("\x1f".join(row).encode())
    digest.update(pd.util.hash_pandas_object(catalog.kg, index=False).values.tobytes())
    return digest.hexdigest()[:16]


def index_dir(catalog_name: str, encoder_id: str) -> Path:
    """Where a catalog's indexes for one encoder live (a plain folder, or a `current` version link)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)
    return llmrec_home() / "indexes" / catalog_name / slug


def index_key(config: PipelineConfig, catalog: Catalog) -> dict[str, Any]:
    """Everything that changes what an index holds: a saved index is reused only if all of it matches."""
    return {
        "catalog_fingerprint": catalog_fingerprint(catalog),
        "text_version": TEXT_VERSION,
        "encoder": config.encoder.model,
        "encoder_dtype": config.encoder.dtype,
        "encoder_max_seq_length": config.encoder.max_seq_length,
        "index_kind": config.index.kind,
        "index_exact_below": config.index.exact_below,
    }


def build_scene_indexes(
    config: PipelineConfig, catalog: Catalog, item_ids: list[str], scenes: list[str], vectors: np.ndarray
) -> tuple[dict[str, VectorIndex], dict[str, dict[str, Any]]]:
    """One index per catalog scene over the embedded items (row i: `item_ids[i]` of `scenes[i]`), and
    each scene's meta.json content (catalog, scene and the index key)."""
    key = index_key(config, catalog)
    of_scene = np.asarray(scenes, dtype=object)
    ids = np.asarray(item_ids, dtype=object)
    indexes, metadata = {}, {}
    for scene in catalog.scenes["scene"]:
        rows = np.flatnonzero(of_scene == scene)
        index = VectorIndex(vectors.shape[1], config.index, expected_size=len(rows))
        if len(rows):  # one upsert: an IVF index trains on the whole scene
            index.upsert(ids[rows].tolist(), vectors[rows])
        indexes[scene] = index
        metadata[scene] = {"catalog": catalog.name, "scene": scene, **key}
    return indexes, metadata
