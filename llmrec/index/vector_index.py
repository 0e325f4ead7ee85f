"""One FAISS index per scene, addressed by item id.

Exact (flat) for small catalogs, HNSW or IVF by configuration. Items can be upserted and removed
by id at any time (item cold start needs no rebuild). Filtered searches over-fetch and double
until k items pass, up to a bound, then score the allowed items exactly. FAISS is imported
lazily; a GPU replica is used only where faiss reports GPUs, and the CPU index stays the source
of truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import IndexConfig

log = logging.getLogger(__name__)
INDEX_FORMAT_VERSION = 1


def _faiss():
    import faiss

    return faiss


class VectorIndex:
    """Inner-product search over unit vectors, keyed by string item ids."""

    def __init__(self, dim: int, config: IndexConfig | None = None, expected_size: int = 0) -> None:
        self.dim = dim
        self.config = config or IndexConfig()
        self.kind = self._choose_kind(expected_size)
        self._index: Any = None  # built on the first upsert (IVF needs training vectors)
        self._gpu_index: Any = None
        self._ids: dict[int, str] = {}  # FAISS id → item id, live items only
        self._keys: dict[str, int] = {}  # item id → FAISS id
        self._next_key = 0
        self.device = "cpu"

    def _choose_kind(self, expected_size: int) -> str:
        if self.config.kind != "auto":
            return self.config.kind
        return "flat" if expected_size < self.config.exact_below else "hnsw"

    def _build(self, training: np.ndarray) -> Any:
        faiss = _faiss()
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.config.hnsw_ef_search
        elif self.kind == "ivf":
            nlist = max(1, min(self.config.ivf_nlist, len(training) // 39))
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.train(training)
            inner.nprobe = min(self.config.ivf_nprobe, nlist)
            inner.set_direct_map_type(faiss.DirectMap.Hashtable)  # ids are ours: remove and reconstruct by id
            return inner
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._keys

    @property
    def item_ids(self) -> list[str]:
        return list(self._keys)

    def upsert(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add items, replacing the vectors of ids already present."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(item_ids), self.dim)
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("upsert got the same item id twice in one batch")
        if self._index is None:
            self._index = self._build(vectors)
        self.remove([i for i in item_ids if i in self._keys])
        keys = np.arange(self._next_key, self._next_key + len(item_ids), dtype=np.int64)
        self._next_key += len(item_ids)
        self._index.add_with_ids(vectors, keys)
        for key, item_id in zip(keys.tolist(), item_ids):
            self._ids[key] = item_id
            self._keys[item_id] = key
        self._gpu_index = None

    def remove(self, item_ids: Sequence[str]) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        keys = [self._keys.pop(i) for i in item_ids if i in self._keys]
        for key in keys:
            del self._ids[key]
        if keys and self.kind != "hnsw":  # HNSW cannot delete: its dead ids are dropped at search time
            self._index.remove_ids(np.asarray(keys, dtype=np.int64))
        self._gpu_index = None
        return len(keys)

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of known items, in the given order."""
        keys = np.asarray([self._keys[i] for i in item_ids], dtype=np.int64)
        if len(keys) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(keys)

    def _searcher(self) -> Any:
        if not self.config.use_gpu or self.kind == "hnsw":
            return self._index
        faiss = _faiss()
        if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
            return self._index
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            self.device = "gpu"
        return self._gpu_index

    def search(
        self,
        query: np.ndarray,
        k: int,
        allow: Callable[[str], bool] | None = None,
    ) -> list[tuple[str, float]]:
        """Top-k (item id, score) for one query vector, best first, keeping only ids `allow` accepts.

        The nearest `k * overfetch` candidates are fetched and filtered, doubling up to
        `max_examined` (or the first fetch, if larger); if fewer than k pass by then, the filter is
        selective, and the items it allows are scored exactly instead. Work is bounded either way:
        never a search for the whole index, whatever the filter.
        """
        if self._index is None or not self._ids or k <= 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        total = self._index.ntotal
        fetch = min(total, k * self.config.overfetch)
        limit = min(total, max(fetch, self.config.max_examined))
        while True:
            scores, keys = self._searcher().search(query, fetch)
            hits: list[tuple[str, float]] = []
            for key, score in zip(keys[0].tolist(), scores[0].tolist()):
                item_id = self._ids.get(key)
                if item_id is not None and (allow is None or allow(item_id)):
                    hits.append((item_id, float(score)))
                    if len(hits) == k:
                        return hits
            if fetch >= total:
                return hits
            if fetch >= limit:
                return self._search_allowed(query[0], k, allow)
            fetch = min(limit, fetch * 2)

    def _search_allowed(self, query: np.ndarray, k: int, allow: Callable[[str], bool] | None, chunk: int = 16_384) -> list[tuple[str, float]]:
        """Exact top-k over the live items `allow` accepts: one predicate call per item, then inner
        products over the allowed vectors only, a chunk at a time (memory stays bounded)."""
        allowed = [(key, item_id) for key, item_id in self._ids.items() if allow is None or allow(item_id)]
        best_scores, best_ids = np.zeros(0, dtype=np.float32), []
        for start in range(0, len(allowed), chunk):
            part = allowed[start : start + chunk]
            vectors = self._index.reconstruct_batch(np.asarray([key for key, _ in part], dtype=np.int64))
            scores = np.concatenate([best_scores, vectors @ query])
            ids = best_ids + [item_id for _, item_id in part]
            top = np.argsort(-scores, kind="stable")[:k]
            best_scores, best_ids = scores[top], [ids[i] for i in top]
        return [(item_id, float(score)) for item_id, score in zip(best_ids, best_scores.tolist())]

    def save(self, directory: Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write index, id map and metadata; a reader checks the version and encoder before use."""
        directory.mkdir(parents=True, exist_ok=True)
        if self._index is not None:  # an index that never held an item has nothing to write (IVF is untrained)
            _faiss().write_index(self._index, str(directory / "index.faiss"))
        keys = sorted(self._ids)
        (directory / "ids.json").write_text(json.dumps({"keys": keys, "item_ids": [self._ids[k] for k in keys], "next_key": self._next_key}))
        meta = {
            "format_version": INDEX_FORMAT_VERSION,
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self),
            "written_at": datetime.now(UTC).isoformat(),
            **(metadata or {}),
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path, config: IndexConfig | None = None) -> VectorIndex:
        """A saved index, checked against its meta.json: raises `CorruptIndexError` on a missing,
        truncated or inconsistent file, so a caller rebuilds instead of serving a broken index."""
        try:
            meta = read_index_meta(directory)
            index = cls(meta["dim"], config)
            index.kind = meta["kind"]
            ids = json.loads((directory / "ids.json").read_text())
            index._ids = dict(zip(ids["keys"], ids["item_ids"], strict=True))
            if (directory / "index.faiss").is_file():
                index._index = _faiss().read_index(str(directory / "index.faiss"))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:  # faiss raises RuntimeError on a bad file
            raise CorruptIndexError(f"{directory}: {type(error).__name__}: {error}") from error
        stored = index._index.ntotal if index._index is not None else 0
        if len(index._ids) != meta["count"] or (index._ids and index._index is None) or stored < len(index._ids):
            raise CorruptIndexError(f"{directory}: meta.json counts {meta['count']} items, ids.json {len(index._ids)}, the index {stored}")
        if index._index is not None and index._index.d != index.dim:
            raise CorruptIndexError(f"{directory}: the index holds {index._index.d}-d vectors, meta.json says {index.dim}")
        index._keys = {item_id: key for key, item_id in index._ids.items()}
        index._next_key = ids["next_key"]
        if index.kind == "hnsw" and index._index is not None:
            _faiss().downcast_index(index._index.index).hnsw.efSearch = index.config.hnsw_ef_search
        if index.kind == "ivf" and index._index is not None:
            index._index.nprobe = min(index.config.ivf_nprobe, index._index.nlist)
        return index


class CorruptIndexError(RuntimeError):
    """A saved index whose files are missing, truncated or disagree with each other."""


def read_index_meta(directory: Path) -> dict[str, Any]:
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("format_version") != INDEX_FORMAT_VERSION:
        raise ValueError(f"{directory} holds index format {meta.get('format_version')}, expected {INDEX_FORMAT_VERSION}")
    return meta
