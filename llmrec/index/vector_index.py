"""One FAISS index per scene, addressed by item id.

Exact (flat), HNSW, IVF or IVF-PQ by configuration, or `auto`: per scene size, the kind and
parameters `llmrec bench scale` measured fastest at recall@10 >= 0.95 (llmrec/configs/index-auto.json).
Items can be upserted and removed by id at any time (item cold start needs no rebuild): an IVF index
stays exact until it holds enough vectors to train its lists, and HNSW, which cannot delete, is
rebuilt once its tombstones pass `hnsw_compact_fraction`. Filtered searches over-fetch and double
until k items pass, up to a bound, then score the allowed items exactly. FAISS is imported lazily; a
GPU replica is used only where faiss reports GPUs, and the CPU index stays the source of truth.
"""

from __future__ import annotations

import functools
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
AUTO_TABLE = Path(__file__).resolve().parent.parent / "configs" / "index-auto.json"  # written by `llmrec bench scale --write-auto`
BUILD_PARAMS = {"flat": (), "hnsw": ("hnsw_m",), "ivf": ("ivf_nlist",), "ivfpq": ("ivf_nlist", "pq_m")}  # fixed once built
SEARCH_PARAMS = ("hnsw_ef_search", "ivf_nprobe")  # applied at any time
TRAIN_PER_LIST = 39  # FAISS's own minimum of training vectors per IVF list
TRAIN_MAX_PER_LIST = 64  # and a sample of at most this many per list: k-means time stays bounded on a 1M-item scene


def _faiss():
    import faiss

    return faiss


@functools.cache
def auto_table(path: Path = AUTO_TABLE) -> list[dict[str, Any]]:
    """The measured choices, smallest scene size first: [{"size", "kind", "params"}, ...]."""
    return sorted(json.loads(path.read_text())["choices"], key=lambda row: row["size"])


def resolve(config: IndexConfig, size: int) -> IndexConfig:
    """The kind and parameters an index of `size` items gets. With kind=auto: exact below the
    smallest measured size (it costs less than exact did there, and loses nothing); else the measured
    choice for the smallest measured size at or above `size` (parameters that hold recall at a larger
    size hold it at a smaller one), or the largest measured for a bigger scene."""
    if config.kind != "auto":
        return config
    rows = auto_table()
    if size < rows[0]["size"]:
        return config.model_copy(update={"kind": "flat"})
    row = next((r for r in rows if r["size"] >= size), rows[-1])
    return config.model_copy(update={"kind": row["kind"], **row["params"]})


class VectorIndex:
    """Inner-product search over unit vectors, keyed by string item ids."""

    def __init__(self, dim: int, config: IndexConfig | None = None, expected_size: int = 0) -> None:
        self.dim = dim
        self.requested = config or IndexConfig()
        self.config = resolve(self.requested, expected_size)
        self._index: Any = None  # built on the first upsert (IVF needs training vectors)
        self._structure: str | None = None  # what `_index` is: the kind, or flat while an IVF kind waits for training vectors
        self._gpu_index: Any = None
        self._ids: dict[int, str] = {}  # FAISS id → item id, live items only
        self._keys: dict[str, int] = {}  # item id → FAISS id
        self._next_key = 0
        self.device = "cpu"

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def structure(self) -> str | None:
        """What is built: the kind, or flat while an IVF kind waits for training vectors (None before any item)."""
        return self._structure

    def nbytes(self) -> int:
        """The index's size as FAISS serializes it (vectors, graph or codes)."""
        return 0 if self._index is None else len(_faiss().serialize_index(self._index))

    def _min_train(self) -> int:
        """Vectors to train on: 39 per IVF list, and for IVF-PQ 39 per code of each 8-bit sub-quantizer."""
        return TRAIN_PER_LIST * max(self.config.ivf_nlist, 256 if self.kind == "ivfpq" else 0)

    def _build(self, training: np.ndarray) -> Any:
        """An empty index of this kind; an IVF kind is trained on `training`, or is flat until there are enough."""
        faiss, c = _faiss(), self.config
        structure = c.kind if c.kind not in ("ivf", "ivfpq") or len(training) >= self._min_train() else "flat"
        if structure in ("ivf", "ivfpq"):
            quantizer = faiss.IndexFlatIP(self.dim)
            if structure == "ivf":
                inner = faiss.IndexIVFFlat(quantizer, self.dim, c.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                inner = faiss.IndexIVFPQ(quantizer, self.dim, c.ivf_nlist, c.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
            most = TRAIN_MAX_PER_LIST * max(c.ivf_nlist, 256 if structure == "ivfpq" else 0)
            if len(training) > most:
                training = training[np.random.default_rng(0).choice(len(training), most, replace=False)]
            inner.train(training)
            inner.nprobe = min(c.ivf_nprobe, c.ivf_nlist)
            inner.set_direct_map_type(faiss.DirectMap.Hashtable)  # ids are ours: remove and reconstruct by id
            index = inner
        elif structure == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, c.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = c.hnsw_ef_search
            index = faiss.IndexIDMap2(inner)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self._structure = structure
        return index

    def _rebuild(self) -> None:
        """A fresh index over the live items, under the same FAISS ids: IVF trained on all of them, HNSW without tombstones."""
        keys = np.asarray(list(self._ids), dtype=np.int64)
        vectors = self._index.reconstruct_batch(keys) if len(keys) else np.zeros((0, self.dim), dtype=np.float32)
        self._index = self._build(vectors)
        if len(keys):
            self._index.add_with_ids(vectors, keys)
        self._gpu_index = None

    def _maybe_rebuild(self) -> None:
        if self._structure == "flat" and self.kind in ("ivf", "ivfpq") and len(self._ids) >= self._min_train():
            log.info("training the %s index on its %d vectors", self.kind, len(self._ids))
            self._rebuild()
        elif self._structure == "hnsw" and self._index.ntotal - len(self._ids) > self.config.hnsw_compact_fraction * self._index.ntotal:
            log.info("compacting an HNSW index: %d tombstones among %d vectors", self._index.ntotal - len(self._ids), self._index.ntotal)
            self._rebuild()

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
        self._forget([i for i in item_ids if i in self._keys])
        keys = np.arange(self._next_key, self._next_key + len(item_ids), dtype=np.int64)
        self._next_key += len(item_ids)
        self._index.add_with_ids(vectors, keys)
        for key, item_id in zip(keys.tolist(), item_ids):
            self._ids[key] = item_id
            self._keys[item_id] = key
        self._gpu_index = None
        self._maybe_rebuild()

    def remove(self, item_ids: Sequence[str]) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        removed = self._forget(item_ids)
        if removed:
            self._maybe_rebuild()
        return removed

    def _forget(self, item_ids: Sequence[str]) -> int:
        keys = [self._keys.pop(i) for i in item_ids if i in self._keys]
        for key in keys:
            del self._ids[key]
        if keys and self._structure != "hnsw":  # HNSW cannot delete: its tombstones are skipped at search time
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
        if not self.config.use_gpu or self._structure == "hnsw":
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
            "structure": self._structure,
            "params": {name: getattr(self.config, name) for name in BUILD_PARAMS[self.kind]},
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
        truncated or inconsistent file, so a caller rebuilds instead of serving a broken index. Without
        `config`, it is used as saved. Search parameters come from `config`; when `config` now resolves to another kind or build parameters
        for this size (a scene that grew, a new measured table), the index is rebuilt from its own
        vectors, which needs no encoder (not from IVF-PQ's, which are lossy)."""
        try:
            meta = read_index_meta(directory)
            saved = (config or IndexConfig()).model_copy(update={"kind": meta["kind"], **meta.get("params", {})})
            index = cls(meta["dim"], config or saved, expected_size=meta["count"])
            wanted, index.config = index.config, saved
            index._structure = meta.get("structure", meta["kind"])
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
        if _build_key(wanted) != _build_key(saved) and index._structure != "ivfpq":
            log.info("%s: rebuilding a %s index of %d items as %s", directory, saved.kind, len(index), _build_key(wanted))
            index.config = wanted
            if index._index is not None:
                index._rebuild()
        index.apply_search_params(wanted)
        return index

    def apply_search_params(self, config: IndexConfig) -> None:
        """Take `config`'s search-time parameters (HNSW efSearch, IVF nprobe); the built structure stays."""
        self.config = self.config.model_copy(update={name: getattr(config, name) for name in SEARCH_PARAMS})
        if self._structure == "hnsw" and self._index is not None:
            _faiss().downcast_index(self._index.index).hnsw.efSearch = self.config.hnsw_ef_search
        if self._structure in ("ivf", "ivfpq") and self._index is not None:
            self._index.nprobe = min(self.config.ivf_nprobe, self.config.ivf_nlist)


def _build_key(config: IndexConfig) -> tuple[Any, ...]:
    """The kind and the parameters fixed once an index of that kind is built."""
    return (config.kind, *(getattr(config, name) for name in BUILD_PARAMS[config.kind]))


class CorruptIndexError(RuntimeError):
    """A saved index whose files are missing, truncated or disagree with each other."""


def read_index_meta(directory: Path) -> dict[str, Any]:
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("format_version") != INDEX_FORMAT_VERSION:
        raise ValueError(f"{directory} holds index format {meta.get('format_version')}, expected {INDEX_FORMAT_VERSION}")
    return meta
