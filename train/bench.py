"""`llmrec bench train`: what the Ray machinery costs, measured against the same work without it.

On one machine, in one run, over the same texts and the same training batches:
- raw sentence-transformers `encode` (items/s) vs the Ray Data index-building embed (items/s,
  actor start-up included, as a build pays it);
- the plain-torch training step in this process (samples/s) vs the same loop under Ray Train's
  TorchTrainer (samples/s measured inside the workers, first step excluded), and the TorchTrainer
  job's wall time including its start-up.
The raw embedding baseline runs with as many torch threads as the actor pool has cores (Ray sets
OMP_NUM_THREADS to an actor's CPU count, 1 here), and the raw training step with one, as one Ray
Train worker gets, so each ratio compares the same compute. `--embed-only` stops after the
embedding rows.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.config import PipelineConfig


def _machine(use_gpu: bool) -> str:
    import torch

    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    return f"{torch.cuda.get_device_name(0)}, {cpu}" if use_gpu and torch.cuda.is_available() else cpu


def train_benchmark(
    config: PipelineConfig, steps: int = 20, batch_size: int = 16, max_seq_length: int = 64, items: int | None = None, num_workers: int = 1, actors: int = 1, use_gpu: bool = False,
    train: bool = True,
) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from llmrec.data.assets import resolve_model
    from llmrec.data.catalog import load_catalog
    from llmrec.training.loop import LocalHooks, LoopConfig, train_loop
    from llmrec.training.pairs import CatalogText, encoder_pairs
    from train.jobs import TrainJob, cold_split, embed_with_ray, init_ray, make_trainer

    model = resolve_model(config.encoder.model)
    device = "cuda" if use_gpu else "cpu"
    catalog = load_catalog(config.catalog)
    text = CatalogText.of(catalog)
    texts = list(text.texts.values())[:items]  # default: the whole catalog, as an index build embeds it
    rows: list[dict[str, Any]] = []
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(actors)  # the cores the actor pool gets: a Ray actor with num_cpus=1 runs one thread

    st = SentenceTransformer(model, device=device)
    st.max_seq_length = max_seq_length
    st.encode(texts[:256], batch_size=256)
    started = time.perf_counter()
    st.encode(texts, batch_size=256)
    raw_items = len(texts) / (time.perf_counter() - started)
    rows.append({"what": f"embed: raw sentence-transformers encode, {actors} thread(s)", "unit": "items/s", "value": round(raw_items, 1)})
    del st

    job = TrainJob(num_workers=num_workers, use_gpu=use_gpu, max_steps=steps + 1, batch_size=batch_size, max_seq_length=max_seq_length)
    init_ray(job)
    frame = pd.DataFrame({"item_id": list(text.texts)[: len(texts)], "text": texts})
    started = time.perf_counter()
    embed_with_ray(frame, model, max_seq_length, actors, use_gpu)
    ray_items = len(texts) / (time.perf_counter() - started)
    rows.append({"what": f"embed: Ray Data index build ({actors} actor(s), start-up included)", "unit": "items/s", "value": round(ray_items, 1), "ratio": round(ray_items / raw_items, 3)})

    if not train:
        torch.set_num_threads(threads)
        return {"machine": _machine(use_gpu), "device": device, "model": config.encoder.model, "catalog": catalog.name, "items": len(texts), "rows": rows}
    torch.set_num_threads(1)  # one Ray Train worker's thread
    pairs = encoder_pairs(text, cold_split(catalog).train, pairs_per_user=2, max_pairs=batch_size * (steps + 1) * num_workers, seed=0)
    pairs["negative_text"] = pairs["item_text"].shift(1).fillna(pairs["item_text"].iloc[-1])  # bench: shape of a hard negative, not mined
    loop = LoopConfig(task="encoder", base_model=model, max_steps=steps + 1, batch_size=batch_size, max_seq_length=max_seq_length, checkpoint_every=10**9, log_every=10**9, warmup_steps=1)
    hooks = LocalHooks({c: pairs[c].tolist() for c in ("user_text", "item_text", "negative_text")}, batch_size, device)
    train_loop(loop, hooks)
    plain = hooks.reports[-1]["samples_per_s"]
    torch.set_num_threads(threads)
    rows.append({"what": "train step: plain torch, this process, 1 thread", "unit": "samples/s", "value": plain})

    import ray

    with tempfile.TemporaryDirectory(prefix="llmrec-bench-") as storage:
        path = Path(storage) / "pairs.parquet"
        pairs.to_parquet(path, index=False)
        job.name, job.storage_path = f"bench-{time.time_ns()}", storage
        started = time.perf_counter()
        result = make_trainer(job, loop, ray.data.read_parquet(str(path))).fit()
        wall = time.perf_counter() - started
    in_ray = result.metrics["samples_per_s"]
    rows.append({"what": f"train step: Ray Train TorchTrainer, {num_workers} worker(s)", "unit": "samples/s", "value": in_ray, "ratio": round(in_ray / plain, 3)})
    job_rate = batch_size * num_workers * (steps + 1) / wall
    rows.append({"what": "train job: TorchTrainer wall, start-up included", "unit": "samples/s", "value": round(job_rate, 2), "ratio": round(job_rate / plain, 3), "seconds": round(wall, 1)})
    settings = {"steps": steps, "batch_size": batch_size, "max_seq_length": max_seq_length, "loop": asdict(loop)}
    return {"machine": _machine(use_gpu), "device": device, "model": config.encoder.model, "catalog": catalog.name, "items": len(texts), **settings, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    training = f", {result['steps']} steps of batch {result['batch_size']} per worker, max_seq_length {result['max_seq_length']}" if "steps" in result else ""
    lines = [
        f"{result['machine']}; {result['items']} {result['catalog']} items{training}",
        "| what | value | ratio |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        ratio = f"{row['ratio']:.3f}" if "ratio" in row else ""
        lines.append(f"| {row['what']} | {row['value']:,} {row['unit']} | {ratio} |")
    return "\n".join(lines)
