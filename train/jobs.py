"""`llmrec train encoder|reranker`: a TorchTrainer job from catalog to exported model directory.

1. Pairs: the train part of the cold-item split (seed 42), rendered as serving renders
   (`llmrec.training.pairs`); hard negatives mined with the starting encoder, whose item vectors
   come from a Ray Data job. Written once per run to parquet beside the run, so a resumed run
   trains on the same pairs; read back with `ray.data.read_parquet` and sharded across workers.
2. Fit: `TorchTrainer(worker_loop)` with `ScalingConfig` (workers, GPU, resources per worker),
   `RunConfig(name, storage_path)` (re-running the same name resumes from its latest checkpoint),
   `CheckpointConfig(num_to_keep)` and `FailureConfig(max_failures)` (a crashed worker group is
   restarted from the latest checkpoint).
3. Export: the final checkpoint becomes a model directory with a card (data, split, pairs, metrics
   per epoch, zero-shot baseline, training time).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import llmrec_home

SPLIT = {"name": "cold-items", "function": "llmrec.data.splits.cold_item_split", "cold_fraction": 0.2, "seed": 42, "train_on": "train", "validate_on": "cold_valid"}


@dataclass
class TrainJob:
    task: str = "encoder"  # encoder | reranker
    data: str = "movielens-1m"
    base_model: str = "all-MiniLM-L6-v2"
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    max_steps: int = 200
    batch_size: int = 32
    lr: float | None = None  # default: 5e-5 encoder, 1e-4 reranker (its classification head starts from scratch)
    max_seq_length: int = 128
    pairs_per_user: int = 8
    max_pairs: int | None = None
    request_fraction: float = 0.0
    item_fraction: float = 0.0
    hard_negatives: bool = True
    random_negatives: float = 1.0  # reranker: the share of negatives drawn at random (the rest are mined hard ones)
    val_users: int = 500
    checkpoint_every: int = 50
    log_every: int = 10
    num_to_keep: int = 2
    max_failures: int = 1
    amp_dtype: str | None = None
    fail_at_step: int | None = None
    zero_shot_baseline: bool = True
    embed_actors: int = 1
    seed: int = 0
    name: str | None = None
    storage_path: str | None = None
    output: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainJob:
        from dataclasses import replace

        from llmrec.data.assets import resolve_model

        name = self.name or f"{self.task}-{self.data}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        storage = self.storage_path or str(llmrec_home() / "runs")
        return replace(
            self,
            base_model=resolve_model(self.base_model),
            name=name,
            storage_path=str(Path(storage).resolve()),
            output=str(Path(self.output or llmrec_home() / "models" / name).resolve()),
            lr=self.lr or (5e-5 if self.task == "encoder" else 1e-4),
        )


def init_ray(job: TrainJob | None = None) -> None:
    """Join the cluster in RAY_ADDRESS if set, else start a local Ray with enough logical CPUs for
    the workers plus the Ray Data tasks that feed them (on a laptop they share the cores)."""
    import os

    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False)
        return
    wanted = int(job.num_workers * job.cpus_per_worker) + 2 if job else 0
    ray.init(num_cpus=max(os.cpu_count() or 1, wanted), include_dashboard=False)


def embed_with_ray(frame: pd.DataFrame, model: str, max_seq_length: int, actors: int = 1, use_gpu: bool = False, batch_size: int = 256) -> pd.DataFrame:
    """Embed `frame.text` with a Ray Data actor pool of `actors` serving Encoders (0: in this
    process); returns the other columns plus `vector`, in the input order."""
    import ray

    from llmrec.index.build import BatchEmbedder

    if actors == 0:  # in this process, no Ray (small pools, tests)
        embedder = BatchEmbedder(model, "cuda" if use_gpu else "cpu", max_seq_length)
        return frame.reset_index(drop=True).assign(vector=list(embedder({"text": frame["text"].to_numpy()})["vector"]))
    frame = frame.reset_index(drop=True).assign(_row=np.arange(len(frame)))
    # Sorted by length, as one `encode` over everything sorts: each batch pads to similar lengths. In
    # blocks of a few batches, so that every actor of the pool gets work from the start.
    frame = frame.iloc[np.argsort(frame["text"].str.len().to_numpy(), kind="stable")]
    blocks = [frame.iloc[start : start + 4 * batch_size] for start in range(0, len(frame), 4 * batch_size)]
    dataset = ray.data.from_pandas(blocks).map_batches(
        BatchEmbedder,
        fn_constructor_kwargs={"model": model, "device": "cuda" if use_gpu else "cpu", "max_seq_length": max_seq_length, "batch_size": batch_size},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=actors,
        num_gpus=1 if use_gpu else 0,
        num_cpus=1,
    )
    out = dataset.to_pandas().sort_values("_row").drop(columns="_row").reset_index(drop=True)
    out["vector"] = [np.asarray(v, dtype=np.float32) for v in out["vector"]]
    return out


def _data_dir(job: TrainJob) -> Path:
    return Path(job.storage_path) / f"{job.name}-data"


def cold_split(catalog):
    """The evaluation's ml1m-cold-items split (the same call on any catalog)."""
    from llmrec.evaluation.protocols import ml1m_cold_items_split

    return ml1m_cold_items_split(catalog)


def prepare_data(job: TrainJob) -> tuple[Path, Any, dict[str, Any]]:
    """Pairs parquet (cached per run), the validation data, and what the card says about them."""
    from llmrec.data.catalog import load_catalog
    from llmrec.training import pairs as P

    catalog = load_catalog(job.data)
    split = cold_split(catalog)
    text = P.CatalogText.of(catalog)
    validation = P.cold_validation_set(text, split.train, split.cold_valid, split.cold_valid_items, job.val_users, seed=SPLIT["seed"])
    directory = _data_dir(job)
    path = directory / "pairs.parquet"
    if not path.is_file():
        started = time.perf_counter()
        pairs = P.encoder_pairs(text, split.train, job.pairs_per_user, job.max_pairs, job.request_fraction, SPLIT["seed"], job.item_fraction)
        pool = sorted(set(pairs["item_id"]))  # negatives come from training items only: never a cold item
        seen = P.seen_items(split.train)
        mine = job.hard_negatives if job.task == "encoder" else job.random_negatives < 1.0  # the reranker's are random by default
        if mine:
            vectors = embed_with_ray(pd.DataFrame({"item_id": pool, "text": [text.texts[i] for i in pool]}), job.base_model, job.max_seq_length, job.embed_actors, job.use_gpu)
            pairs["negative_id"] = P.mine_hard_negatives(pairs, pool, np.stack(vectors["vector"].to_list()), seen, seed=SPLIT["seed"])
            pairs["negative_text"] = [text.texts[i] for i in pairs["negative_id"]]
        table = pairs if job.task == "encoder" else P.reranker_pairs(text, pairs, pool, seen, job.random_negatives, seed=SPLIT["seed"])
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / ".pairs.parquet.tmp"
        table.to_parquet(staging, index=False)
        staging.rename(path)
        (directory / "data.json").write_text(json.dumps({"rows": len(table), "pairs": len(pairs), "negative_pool": len(pool), "seconds": round(time.perf_counter() - started, 1)}))
    info = json.loads((directory / "data.json").read_text())
    if job.task == "reranker":
        validation_data = P.validation_label_pairs(validation, seed=SPLIT["seed"]).to_dict("list")
    else:
        validation_data = validation
    data_card = {
        "catalog": job.data,
        "rows": info["rows"],
        "pairs_per_user": job.pairs_per_user,
        "max_pairs": job.max_pairs,
        **({"hard_negatives": job.hard_negatives} if job.task == "encoder" else {"random_negatives": job.random_negatives}),
        "negative_pool_items": info["negative_pool"],
        "request_fraction": job.request_fraction,
        "item_fraction": job.item_fraction,
        "validation_users": len(validation),
        "validation_items": len(validation.item_ids),
        "pairs_path": str(path),
    }
    return path, (validation, validation_data), data_card


def zero_shot(job: TrainJob, validation: Any) -> dict[str, float]:
    """The starting encoder on the same validation set, through the serving Encoder."""
    from llmrec.config import EncoderConfig
    from llmrec.serving.encoder import Encoder
    from llmrec.training.evaluate import retrieval_metrics

    encoder = Encoder(EncoderConfig(model=job.base_model, device="cpu", max_seq_length=job.max_seq_length))
    return retrieval_metrics(encoder.encode(validation.user_texts), encoder.encode(validation.item_texts), validation, 20)


def make_trainer(job: TrainJob, loop, dataset, validation: Any = None):
    """The TorchTrainer of a job: workers and resources from the job, checkpoints kept and runs
    resumed under RunConfig(name, storage_path), worker-group restarts from FailureConfig."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from train.ray_hooks import worker_loop

    resources = {"CPU": job.cpus_per_worker}
    if job.use_gpu:
        resources["GPU"] = job.gpus_per_worker or 1
    return TorchTrainer(
        worker_loop,
        train_loop_config={"loop": asdict(loop), "validation": validation},
        scaling_config=ray.train.ScalingConfig(num_workers=job.num_workers, use_gpu=job.use_gpu, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=job.name,
            storage_path=job.storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=job.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=job.max_failures),
        ),
        datasets={"train": dataset},
    )


def fit(job: TrainJob) -> dict[str, Any]:
    """Run (or resume, when `job.name` already has checkpoints) and export. Returns a summary."""
    import ray

    from llmrec.training.export import export_cross_encoder, export_encoder
    from llmrec.training.loop import LoopConfig, load_state

    job = job.resolved()
    started = time.perf_counter()
    init_ray(job)
    path, (validation, validation_data), data_card = prepare_data(job)
    baseline = zero_shot(job, validation) if job.task == "encoder" and job.zero_shot_baseline else None
    loop = LoopConfig(
        task=job.task, base_model=job.base_model, max_steps=job.max_steps, batch_size=job.batch_size, lr=job.lr,
        max_seq_length=job.max_seq_length, hard_negatives=job.hard_negatives, checkpoint_every=job.checkpoint_every,
        log_every=job.log_every, amp_dtype=job.amp_dtype, fail_at_step=job.fail_at_step, seed=job.seed,
        warmup_steps=max(1, min(100, job.max_steps // 10)),
    )
    result = make_trainer(job, loop, ray.data.read_parquet(str(path)), validation_data).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"run {job.name} finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        state = load_state(Path(directory))
    history = state["history"]
    final = history[-1]
    wall = time.perf_counter() - started
    card = {
        "data": data_card,
        "split": SPLIT,
        "training": {
            "run": job.name, "storage_path": job.storage_path, "checkpoint": result.checkpoint.path,
            "steps": state["step"], "epochs_completed": state["epoch"], "num_workers": job.num_workers, "use_gpu": job.use_gpu,
            "batch_per_worker": job.batch_size, "global_batch": job.batch_size * job.num_workers, "lr": job.lr,
            "max_seq_length": job.max_seq_length, "amp_dtype": job.amp_dtype, "train_seconds": state["train_seconds"],
            "job_wall_seconds": round(wall, 1), "samples_per_s": final.get("samples_per_s"),
            "resumed_from_step": final.get("resumed_from_step"),
        },
        "metrics": {k: v for k, v in final.items() if k.startswith("val_")},
        "history": history,
    }
    if baseline is not None:
        card["zero_shot"] = {f"val_{k}": v for k, v in baseline.items()}
    export = export_encoder if job.task == "encoder" else export_cross_encoder
    output = export(state["model"], job.base_model, Path(job.output), card)
    return {"output": str(output), "run": job.name, "storage_path": job.storage_path, **card}


def compare_encoders(models: list[str], data: str = "movielens-1m", part: str = "cold_test", max_users: int | None = 1000, max_seq_length: int = 128) -> dict[str, Any]:
    """Recall@20 / NDCG@20 of each encoder, served as the recommender serves a user (their liked
    titles and profile as text, from the split's train part), ranking the cold items of `part`
    (cold_valid or cold_test) for the users who liked at least one of them. No Ray needed."""
    from llmrec.config import EncoderConfig
    from llmrec.data.catalog import load_catalog
    from llmrec.serving.encoder import Encoder
    from llmrec.training.evaluate import retrieval_metrics
    from llmrec.training.pairs import CatalogText, cold_validation_set

    catalog = load_catalog(data)
    split = cold_split(catalog)
    cold, items = (split.cold_test, split.cold_test_items) if part == "cold_test" else (split.cold_valid, split.cold_valid_items)
    users = cold_validation_set(CatalogText.of(catalog), split.train, cold, items, max_users, seed=SPLIT["seed"], name=part)
    rows = {}
    for model in models:
        encoder = Encoder(EncoderConfig(model=model, device="cpu", max_seq_length=max_seq_length))
        rows[model] = retrieval_metrics(encoder.encode(users.user_texts), encoder.encode(users.item_texts), users, 20)
    return {"data": data, "part": part, "users": len(users), "items": len(users.item_ids), "max_seq_length": max_seq_length, "models": rows}
