"""The `llmrec.training.loop.Hooks` of a Ray Train worker, and the function TorchTrainer runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
from torch import nn

from llmrec.training.loop import LoopConfig, load_state, train_loop


class RayTrainHooks:
    """DDP through `prepare_model`, the worker's shard of the Ray Dataset, checkpoints through
    `ray.train.report` / `get_checkpoint` (so a restarted or resumed run continues)."""

    def __init__(self, config: LoopConfig) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.config = config
        self.shard = ray.train.get_dataset_shard("train")

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(model)

    def batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        size = self.config.batch_size
        for batch in self.shard.iter_batches(
            batch_size=size, batch_format="numpy", drop_last=True, local_shuffle_buffer_size=size * 8, local_shuffle_seed=self.config.seed + epoch
        ):
            yield {k: v.tolist() for k, v in batch.items()}

    def restored_state(self) -> dict[str, Any] | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(Path(directory))

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report({k: v for k, v in metrics.items() if v is not None}, checkpoint=checkpoint)


def worker_loop(payload: dict[str, Any]) -> None:
    """`train_loop_per_worker`: the payload carries the LoopConfig fields and the validation data."""
    config = LoopConfig(**payload["loop"])
    train_loop(config, RayTrainHooks(config), payload.get("validation"))
