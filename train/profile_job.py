"""`llmrec profile --ray`: item profiles from a Ray Data actor pool, each actor one Profiler (the
packaged model on CPU, vLLM on GPU nodes with profiling.backend=vllm).

The items the book lacks stream through `map_batches` in one pass (each actor loads its model
once); each finished batch is appended to the book as it arrives, so a job stopped midway resumes
where it was (the book is the only state).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import ProfilingConfig
from llmrec.profiling.book import ProfileBook
from llmrec.profiling.catalog import profile_into
from llmrec.profiling.profile import ItemProfile, ItemSource


class BatchProfiler:
    """A Ray Data actor: a batch of items (columns) in, their profiles (JSON text, "" when unreadable) out."""

    def __init__(self, config: dict[str, Any]) -> None:
        from llmrec.profiling.profiler import Profiler

        self.profiler = Profiler(ProfilingConfig.model_validate(config))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sources = [
            ItemSource(str(i), str(s), str(t), str(x), json.loads(a))
            for i, s, t, x, a in zip(batch["item_id"], batch["scene"], batch["title"], batch["text"], batch["attributes"], strict=True)
        ]
        profiles = self.profiler.profile(sources)
        return {"item_id": batch["item_id"], "profile": np.array([json.dumps(p.as_dict()) if p else "" for p in profiles], dtype=object)}


def profile_sources(sources: Sequence[ItemSource], book: ProfileBook, config: ProfilingConfig, actors: int = 1, use_gpu: bool = False) -> dict[str, Any]:
    import ray

    def over_ray(todo: list[ItemSource]) -> Iterator[list[tuple[ItemSource, ItemProfile | None]]]:
        if not todo:
            return
        by_id = {s.item_id: s for s in todo}
        frame = pd.DataFrame(
            {"item_id": list(by_id), "scene": [s.scene for s in todo], "title": [s.title for s in todo],
             "text": [s.text for s in todo], "attributes": [json.dumps(dict(s.attributes)) for s in todo]}
        )
        dataset = ray.data.from_pandas(frame).map_batches(
            BatchProfiler, fn_constructor_kwargs={"config": config.model_dump()}, batch_size=config.batch_size, batch_format="numpy",
            concurrency=actors, num_gpus=1 if use_gpu else 0, num_cpus=1,
        )
        for rows in dataset.iter_batches(batch_size=None, batch_format="numpy"):  # each batch as the pool finishes it
            yield [
                (by_id[str(item_id)], ItemProfile.from_dict(json.loads(text)) if text else None)
                for item_id, text in zip(rows["item_id"], rows["profile"], strict=True)
            ]

    return profile_into(sources, book, over_ray)
