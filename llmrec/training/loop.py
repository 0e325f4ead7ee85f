"""The per-worker training loop body, plain torch: whoever launches it supplies `Hooks`.

Ray Train's TorchTrainer supplies hooks backed by `ray.train` (DDP model, dataset shard,
checkpoint restore, report); a single process or a GPU box supplies plain ones. The loop:
restores a checkpoint if there is one, steps until `max_steps` (epochs over the worker's shard),
reports the mean loss and throughput every `log_every` steps, a checkpoint every
`checkpoint_every` steps and at the end, and a validation metric at every epoch's end.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from llmrec.training.losses import contrastive_loss, pointwise_loss
from llmrec.training.model import build_model, load_tokenizer, tokenize

STATE_FILE = "state.pt"


class InjectedFailure(RuntimeError):
    """Raised on purpose (LoopConfig.fail_at_step) to prove that a run resumes from its checkpoint."""


@dataclass
class LoopConfig:
    task: str = "encoder"  # encoder | reranker
    base_model: str = ""  # a sentence-transformers / transformers directory
    max_steps: int = 100
    max_epochs: int = 1000
    batch_size: int = 32  # per worker
    lr: float = 2e-5
    warmup_steps: int = 10
    weight_decay: float = 0.01
    max_seq_length: int = 128
    scale: float = 20.0  # contrastive inverse temperature
    hard_negatives: bool = True
    checkpoint_every: int = 50
    log_every: int = 10
    amp_dtype: str | None = None  # "bfloat16" / "float16": autocast on the worker's device
    fail_at_step: int | None = None  # raise InjectedFailure after this step, unless resumed
    seed: int = 0
    val_k: int = 20


class Hooks(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: nn.Module) -> nn.Module: ...
    def batches(self, epoch: int) -> Iterable[dict[str, Any]]: ...
    def restored_state(self) -> dict[str, Any] | None: ...
    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def batch_loss(task: str, model: nn.Module, tokenizer, batch: dict[str, Any], config: LoopConfig, device: torch.device) -> torch.Tensor:
    """One batch's loss. Encoder batches hold user_text, item_text (and negative_text); reranker
    batches hold text_a, text_b, label."""
    length = config.max_seq_length
    if task == "encoder":
        groups = [tokenize(tokenizer, batch["user_text"], length, device), tokenize(tokenizer, batch["item_text"], length, device)]
        if config.hard_negatives and "negative_text" in batch:
            groups.append(tokenize(tokenizer, batch["negative_text"], length, device))
        vectors = model(*groups)
        return contrastive_loss(vectors[0], vectors[1], vectors[2] if len(vectors) > 2 else None, config.scale)
    logits = model(tokenize(tokenizer, batch["text_a"], length, device, pair=batch["text_b"]))
    return pointwise_loss(logits, torch.as_tensor(list(batch["label"]), device=device))


def _schedule(config: LoopConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / max(1, config.warmup_steps)
        return max(0.0, (config.max_steps - step) / max(1, config.max_steps - config.warmup_steps))

    return factor


def _autocast(config: LoopConfig, device: torch.device):
    if not config.amp_dtype:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=getattr(torch, config.amp_dtype))


def train_loop(config: LoopConfig, hooks: Hooks, validation: Any = None) -> dict[str, Any]:
    """Run (or resume) training; returns the last reported metrics on every rank."""
    torch.manual_seed(config.seed)
    device = hooks.device
    tokenizer = load_tokenizer(config.base_model)
    model = build_model(config.task, config.base_model).to(device)
    state = hooks.restored_state()
    if state is not None:
        model.load_state_dict(state["model"])
    wrapped = hooks.prepare_model(model)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    step, epoch, done_in_epoch, train_seconds, history = 0, 0, 0, 0.0, []
    resumed_from = None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, done_in_epoch = state["step"], state["epoch"], state["done_in_epoch"]
        train_seconds, history, resumed_from = state["train_seconds"], state["history"], state["step"]
        if hooks.world_size == 1 and "rng" in state:  # one worker resumes bit for bit (its dropout masks included)
            torch.set_rng_state(state["rng"])

    def checkpoint(metrics: dict[str, Any]) -> None:
        """Rank 0 writes the state to a fresh directory and hands it over with the report."""
        history.append(metrics)
        if hooks.rank != 0:
            hooks.report(metrics, None)
            return
        directory = Path(tempfile.mkdtemp(prefix="llmrec-ckpt-"))
        try:
            torch.save(
                {
                    "model": unwrap(wrapped).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                    "epoch": epoch,
                    "done_in_epoch": done_in_epoch,
                    "train_seconds": train_seconds,
                    "history": history,
                    "config": asdict(config),
                    "rng": torch.get_rng_state(),  # rank 0's: DDP workers resume their weights and optimizer, not their dropout streams
                },
                directory / STATE_FILE,
            )
            hooks.report(metrics, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    global_batch = config.batch_size * hooks.world_size
    losses: list[float] = []
    timed_steps, timed_seconds = 0, 0.0
    metrics: dict[str, Any] = {}
    wrapped.train()
    while step < config.max_steps and epoch < config.max_epochs:
        batches: Iterator[dict[str, Any]] = iter(hooks.batches(epoch))
        for _ in range(done_in_epoch):  # resume inside an epoch: skip what was trained on
            next(batches, None)
        seen_batch = False
        for batch in batches:
            seen_batch = True
            started = time.perf_counter()
            with _autocast(config, device):
                loss = batch_loss(config.task, wrapped, tokenizer, batch, config, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(wrapped.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            train_seconds += seconds
            if step > 0 or resumed_from is not None:  # the first step of a process is warm-up
                timed_steps, timed_seconds = timed_steps + 1, timed_seconds + seconds
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {step}")
            losses.append(value)
            step, done_in_epoch = step + 1, done_in_epoch + 1
            if config.fail_at_step is not None and resumed_from is None and step == config.fail_at_step:
                raise InjectedFailure(f"injected failure after step {step} (rank {hooks.rank})")
            at_end = step >= config.max_steps
            if step % config.log_every == 0 or step % config.checkpoint_every == 0 or at_end:
                metrics = {
                    "step": step,
                    "epoch": epoch,
                    "loss": sum(losses) / len(losses),
                    "lr": scheduler.get_last_lr()[0],
                    "samples_per_s": round(global_batch * timed_steps / timed_seconds, 2) if timed_seconds else None,
                    "train_seconds": round(train_seconds, 2),
                    "resumed_from_step": resumed_from,
                }
                losses = []
                if at_end and validation is not None:
                    metrics.update(_validate(config, wrapped, tokenizer, validation, hooks))
                if step % config.checkpoint_every == 0 or at_end:
                    checkpoint(metrics)
                else:
                    hooks.report(metrics, None)
            if at_end:
                break
        if not seen_batch and done_in_epoch == 0:
            raise ValueError(f"worker {hooks.rank} got no full batch of {config.batch_size} in epoch {epoch}: give more pairs or a smaller batch")
        if step < config.max_steps:  # a whole epoch went by: validate and checkpoint
            epoch, done_in_epoch = epoch + 1, 0
            loss = sum(losses) / len(losses) if losses else None
            metrics = {"step": step, "epoch": epoch - 1, "loss": loss, "epoch_end": True, "train_seconds": round(train_seconds, 2), "resumed_from_step": resumed_from}
            losses = []
            if validation is not None:
                metrics.update(_validate(config, wrapped, tokenizer, validation, hooks))
            checkpoint(metrics)
    return metrics


def _validate(config: LoopConfig, wrapped: nn.Module, tokenizer, validation: Any, hooks: Hooks) -> dict[str, float]:
    """Rank 0 validates (the others wait for it at the next report)."""
    if hooks.rank != 0:
        return {}
    from llmrec.training.evaluate import validate

    return validate(config.task, unwrap(wrapped), tokenizer, validation, hooks.device, config.max_seq_length, config.val_k)


def load_state(directory: Path) -> dict[str, Any]:
    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)


class LocalHooks:
    """One process, no Ray: batches from an in-memory table, checkpoints kept in a directory.
    Used by benchmarks and by the GPU step script."""

    def __init__(self, columns: dict[str, list], batch_size: int, device: str = "cpu", checkpoint_root: Path | None = None) -> None:
        self.rank, self.world_size, self.device = 0, 1, torch.device(device)
        self.columns, self.batch_size = columns, batch_size
        self.checkpoint_root = checkpoint_root
        self.reports: list[dict[str, Any]] = []
        self.last_checkpoint: Path | None = None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        n = len(next(iter(self.columns.values())))
        for start in range(0, n - self.batch_size + 1, self.batch_size):
            yield {k: v[start : start + self.batch_size] for k, v in self.columns.items()}

    def restored_state(self) -> dict[str, Any] | None:
        return load_state(self.last_checkpoint) if self.last_checkpoint else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reports.append(metrics)
        if checkpoint_dir is not None and self.checkpoint_root is not None:
            target = self.checkpoint_root / f"step-{metrics['step']:06d}"
            shutil.copytree(checkpoint_dir, target, dirs_exist_ok=True)
            self.last_checkpoint = target

