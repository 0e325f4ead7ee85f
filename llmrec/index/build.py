"""The one index key and build path: what a saved index was built from, and how a scene's index is made.

Serving (`Retriever`, on a cache miss) and the Ray Data job (`llmrec index build --ray`, whose
actors embed with `BatchEmbedder`) both build through `build_scene_indexes`, stamp each scene's
meta.json with `index_key` and publish a new version (`versions.publish_version`), so either can
load what the other saved; an index is reused only when every part of its key matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import PipelineConfig, llmrec_home
from llmrec.data.catalog import Catalog
from llmrec.data.text import TEXT_VERSION
from llmrec.index.vector_index import VectorIndex, read_index_meta


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
        "index_kind": config.index.kind,  # under auto, a saved index of another kind for its size is rebuilt from its vectors on load
    }


def load_scene_indexes(directory: Path, scenes: list[str], key: dict[str, Any], config: PipelineConfig) -> dict[str, VectorIndex] | None:
    """The saved build when every scene is there and was built with this key; None when any is
    missing or was built from something else. A build that is there but does not check out raises
    `CorruptIndexError` (or the ValueError of an unreadable meta.json)."""
    if not all((directory / s / "meta.json").is_file() for s in scenes):
        return None
    metas = [read_index_meta(directory / s) for s in scenes]
    if any({k: m.get(k) for k in key} != key for m in metas):
        return None
    return {s: VectorIndex.load(directory / s, config.index) for s in scenes}


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


class BatchEmbedder:
    """Embeds the `text` column of a batch (a dict of numpy arrays, Ray Data's batch format) with
    the serving Encoder; returns the other columns plus `vector`. Construct once per worker."""

    def __init__(self, model: str, device: str = "cpu", max_seq_length: int = 128, batch_size: int = 64, dtype: str = "float32") -> None:
        from llmrec.config import EncoderConfig
        from llmrec.serving.encoder import Encoder

        self.encoder = Encoder(EncoderConfig(model=model, device=device, max_seq_length=max_seq_length, batch_size=batch_size, dtype=dtype))

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v) for k, v in batch.items() if k != "text"}
        out["vector"] = self.encoder.encode([str(t) for t in batch["text"]])
        return out
