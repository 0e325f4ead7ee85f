"""`llmrec bench shards` (a command): one scene's index in two or more shards against one, at the same size.

The items and vectors are `llmrec bench scale`'s (real films, then projected variants). For each shard
count the same corpus is split by id hash (`llmrec.index.shards`), each shard is built with the
configured kind for its own size, and every query is sent to all shards at once and merged.
Printed per shard count: build seconds (the slowest shard, as they build in parallel), items and
resident memory of each shard's process, p50/p99 at k=10 with and without the year filter, and
recall@10 against exact search over the whole corpus. Who holds a shard is the caller's (`shard_set`):
the command uses Ray actors on the nodes of a local multi-node cluster (`deployments/shard.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from llmrec.bench import scale
from llmrec.config import PipelineConfig
from llmrec.index.shards import Hits, split


class ShardSet(Protocol):
    def load(self, parts: list[tuple[list[str], np.ndarray]], allowed: set[str]) -> list[float]: ...
    def search(self, query: np.ndarray, k: int, filtered: bool = False) -> Hits: ...
    def describe(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


def shard_benchmark(
    config: PipelineConfig, size: int, counts: Sequence[int], shard_set: Callable[[int], ShardSet], log: Callable[[str], None] = print
) -> dict[str, Any]:
    items = scale.films()
    vectors = scale.film_vectors(items, config)
    queries = vectors[: scale.QUERIES]
    chosen, chosen_vectors, projected = scale.corpus(items, vectors, size)
    ids = chosen["item_id"].tolist()
    mask = scale.filter_mask(chosen)
    allowed = {i for i, keep in zip(ids, mask) if keep}
    truth = {
        "all": [[ids[r] for r in rows] for rows in scale.exact_top(chosen_vectors, queries, 10)],
        "filtered": [[ids[r] for r in rows] for rows in scale.exact_top(chosen_vectors, queries, 10, mask)],
    }
    rows = []
    for count in counts:
        log(f"{count} shard(s) over {size:,} items")
        shards = shard_set(count)
        try:
            build_s = max(shards.load(split(ids, chosen_vectors, count), allowed))
            shards.search(queries[0], 10)
            row: dict[str, Any] = {"shards": count, "build_s": round(build_s, 1), "shard_of": shards.describe()}
            for name, filtered in (("", False), ("_filtered", True)):
                start = time.perf_counter()
                hits, seconds = scale.timed(lambda q: shards.search(q, 10, filtered), queries)  # noqa: B023
                row[f"p50{name}_ms"], row[f"p99{name}_ms"] = scale.percentile_ms(seconds, 50), scale.percentile_ms(seconds, 99)
                row[f"recall@10{name}"] = scale.recall_at_10(hits, truth["filtered" if filtered else "all"])
                row[f"qps{name}"] = round(len(queries) / (time.perf_counter() - start), 1)
            rows.append(row)
            log(f"  {row}")
        finally:
            shards.close()
    return {"encoder": config.encoder.model, "size": size, "projected": projected, "index_kind": config.index.kind, "queries": scale.QUERIES, "rows": rows}


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"{result['size']:,} items ({result['projected']:,} projected), index.kind {result['index_kind']}, {result['queries']} queries, one at a time",
        "",
        "| shards | nodes | build s (slowest shard) | items per shard | RSS MB per shard | recall@10 | recall@10 filtered | p50/p99 ms | filtered p50/p99 ms |",
        "| ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        of = r["shard_of"]
        items, rss = ", ".join(format(s["items"], ",") for s in of), ", ".join(str(round(s["rss_mb"])) for s in of)
        lines.append(
            f"| {r['shards']} | {len({s['node'] for s in of})} | {r['build_s']} | {items} | {rss} | {r['recall@10']} | {r['recall@10_filtered']} | {r['p50_ms']} / {r['p99_ms']} | "
            f"{r['p50_filtered_ms']} / {r['p99_filtered_ms']} |"
        )
    return "\n".join(lines)
