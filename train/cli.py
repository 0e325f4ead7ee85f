"""The `llmrec` subcommands that run Ray jobs: `train encoder|reranker`, `index build --ray`,
`bench train`. Only argparse here at import time; Ray is imported when a command runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False, default=str) if args.json else text)


def _need_ray() -> None:
    from llmrec.errors import LLMRecError

    try:
        import ray  # noqa: F401
    except ImportError:
        raise LLMRecError("this command runs on Ray: pip install 'llmrec[train]'") from None


def cmd_train(args: argparse.Namespace) -> None:
    _need_ray()
    from train.jobs import TrainJob, fit

    job = TrainJob(
        task=args.task, data=args.data, base_model=args.base_model, num_workers=args.num_workers, use_gpu=args.use_gpu,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker, max_steps=args.max_steps,
        batch_size=args.batch_size, lr=args.lr, max_seq_length=args.max_seq_length, pairs_per_user=args.pairs_per_user,
        max_pairs=args.max_pairs, request_fraction=args.request_fraction, item_fraction=args.item_fraction, hard_negatives=not args.no_hard_negatives,
        val_users=args.val_users, checkpoint_every=args.checkpoint_every, log_every=args.log_every, num_to_keep=args.keep_checkpoints,
        max_failures=args.max_failures, amp_dtype=args.amp, fail_at_step=args.fail_at_step, embed_actors=args.embed_actors,
        seed=args.seed, name=args.name, storage_path=args.storage_path, output=args.output,
        **({"random_negatives": args.random_negatives} if args.task == "reranker" else {}),
    )
    out = fit(job)
    t = out["training"]
    lines = [
        f"trained {args.task} '{out['run']}': {t['steps']} steps on {t['num_workers']} worker(s){' (GPU)' if t['use_gpu'] else ''}, "
        f"{t['samples_per_s']} samples/s, {t['train_seconds']:.0f} s of steps, {t['job_wall_seconds']:.0f} s in all"
        + (f", resumed from step {t['resumed_from_step']}" if t.get("resumed_from_step") else ""),
        "validation: " + ", ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items()),
    ]
    if out.get("zero_shot"):
        lines.append("zero-shot: " + ", ".join(f"{k} {v:.4f}" for k, v in out["zero_shot"].items()))
    lines += [f"checkpoints → {t['storage_path']}/{out['run']} (run again with --name {out['run']} to resume)", f"model → {out['output']}"]
    lines.append(f"serve it: --set {'encoder.model' if args.task == 'encoder' else 'rerank.cross_encoder'}={out['output']}")
    _emit(args, out, "\n".join(lines))


def cmd_train_compare(args: argparse.Namespace) -> None:
    from train.jobs import compare_encoders

    out = compare_encoders(args.models.split(","), args.data, args.part, args.users or None, args.max_seq_length)
    lines = [f"{out['data']} {out['part']}: {out['users']} users ranking {out['items']} cold items, user = liked titles + profile as text", "| encoder | recall@20 | ndcg@20 |", "|---|---|---|"]
    lines += [f"| {m} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} |" for m, r in out["models"].items()]
    _emit(args, out, "\n".join(lines))


def cmd_train_ranker(args: argparse.Namespace, config) -> None:
    from pathlib import Path

    from llmrec.config import llmrec_home
    from llmrec.data.catalog import load_catalog
    from llmrec.training.ranker import train_ranker

    catalog = load_catalog(config.catalog)
    output = Path(args.output) if args.output else llmrec_home() / "models" / f"ranker-{catalog.name}"
    out = train_ranker(
        config, catalog, output, users=args.users, k=args.k, modes=args.modes.split(","), context_attribute=args.context_attribute, newcomers=args.newcomers
    )
    default, trained = f"ndcg@{args.k} default", f"ndcg@{args.k} trained"
    lines = [f"trained the blend of {catalog.name} on {out['examples']} requests of held-out users", f"| scene | mode | requests | {default} | {trained} |", "|---|---|---|---|---|"]
    for scene, modes in out["check"].items():
        for mode, r in modes.items():
            lines.append(f"| {scene} | {mode} | {r['examples']} | {r[default]:.4f} | {'not fitted' if r[trained] is None else f'{r[trained]:.4f}'} |")
    for scene, card in out["context_models"].items():
        contexts = ", ".join(card["contexts"])
        lines.append(f"context model of {scene}: contexts {contexts}; validation AUC {card['validation_auc']:.4f} after {card['epochs']} epochs on {card['rows']} rated rows")
    for scene, card in out["newcomer_models"].items():
        lines.append(f"newcomer model of {scene}: held-out NDCG@20 {card['held_out_ndcg@20']:.4f} after {card['epochs']} epochs on {card['users']} users")
    if out["kept_defaults"]:
        lines.append("served with the configured defaults (not asked for, or the trained weights lost on the checked half): " + ", ".join(out["kept_defaults"]))
    lines += [f"(half of the held-out users fit, the other half checked; the saved model is fitted on all) → {out['output']}", f"serve it: --set rerank.model={out['output']}"]
    _emit(args, out, "\n".join(lines))


def cmd_index_build_ray(args: argparse.Namespace, config) -> None:
    _need_ray()
    from train.index_job import IndexJob, build_index

    out = build_index(config, IndexJob(actors=args.actors, batch_size=args.batch_size, use_gpu=args.use_gpu, keep=args.keep))
    _emit(
        args,
        out,
        f"indexed {out['items']:,} items with Ray Data ({args.actors} actor(s)): {out['items_per_s']:,.1f} items/s embedding, "
        f"{out['seconds']:.1f} s in all: {out['indexes']}\nversion {out['version']} is now current → {out['path']}",
    )


def cmd_bench_train(args: argparse.Namespace, config) -> None:
    _need_ray()
    from train.bench import format_table, train_benchmark

    result = train_benchmark(
        config, steps=args.steps, batch_size=args.batch_size, max_seq_length=args.max_seq_length, items=args.items,
        num_workers=args.num_workers, actors=args.actors, use_gpu=args.use_gpu, train=not args.embed_only,
    )
    _emit(args, result, format_table(result))


def profile_with_ray(sources, book, config, actors: int, use_gpu: bool) -> dict[str, Any]:
    from train.jobs import init_ray
    from train.profile_job import profile_sources

    init_ray()
    return profile_sources(sources, book, config, actors, use_gpu)


def add_commands(
    commands, common: argparse.ArgumentParser, index_build: argparse.ArgumentParser, profile: argparse.ArgumentParser, bench, config_of: Callable
) -> None:
    """Register the Ray commands on the main parser (`config_of(args)` gives the PipelineConfig)."""
    profile.add_argument("--ray", action="store_true", help="generate with a Ray Data actor pool (vLLM with profiling.backend=vllm)")
    profile.add_argument("--actors", type=int, default=1, help="with --ray: model actors (each loads the model)")
    profile.add_argument("--use-gpu", action="store_true", help="with --ray: one GPU per actor")
    profile.set_defaults(ray_func=lambda a, sources, book: profile_with_ray(sources, book, config_of(a).profiling, a.actors, a.use_gpu))
    index_build.add_argument("--ray", action="store_true", help="embed with a Ray Data actor pool and publish a new index version atomically")
    index_build.add_argument("--actors", type=int, default=2, help="with --ray: encoder actors")
    index_build.add_argument("--batch-size", type=int, default=256, help="with --ray: items per batch")
    index_build.add_argument("--use-gpu", action="store_true", help="with --ray: one GPU per actor")
    index_build.add_argument("--keep", type=int, default=2, help="with --ray: index versions kept on disk")
    index_build.set_defaults(ray_func=lambda a: cmd_index_build_ray(a, config_of(a)))

    train = commands.add_parser("train", help="fine-tune models with Ray Train").add_subparsers(dest="task", required=True)
    for task, what in (("encoder", "the two-tower text encoder (contrastive, in-batch + hard negatives)"), ("reranker", "a cross-encoder reranker from the packaged MiniLM")):
        p = train.add_parser(task, parents=[common], help=f"fine-tune {what}")
        p.add_argument("--data", default="movielens-1m", help="prepared catalog with interactions (trains on its cold-item split's train part)")
        p.add_argument("--base-model", default="all-MiniLM-L6-v2", help="starting model: packaged name or sentence-transformers directory")
        p.add_argument("--num-workers", type=int, default=2, help="Ray Train workers (DDP: gloo on CPU, NCCL on GPU)")
        p.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
        p.add_argument("--cpus-per-worker", type=float, default=1.0)
        p.add_argument("--gpus-per-worker", type=float)
        p.add_argument("--max-steps", type=int, default=200)
        p.add_argument("--batch-size", type=int, default=32, help="pairs per worker per step")
        p.add_argument("--lr", type=float, help="default 5e-5 (encoder), 1e-4 (reranker)")
        p.add_argument("--max-seq-length", type=int, default=128)
        p.add_argument("--pairs-per-user", type=int, default=8)
        p.add_argument("--max-pairs", type=int, help="use at most this many pairs")
        p.add_argument("--request-fraction", type=float, default=0.0, help="share of user texts led by a short request made from the target's genres")
        p.add_argument("--item-fraction", type=float, default=0.0, help="share of pairs whose query side is one earlier liked item's text (item-to-item)")
        p.add_argument("--no-hard-negatives", action="store_true", help="in-batch negatives only")
        p.add_argument("--val-users", type=int, default=500, help="cold-validation users ranked at each epoch's end")
        p.add_argument("--checkpoint-every", type=int, default=50)
        p.add_argument("--log-every", type=int, default=10)
        p.add_argument("--keep-checkpoints", type=int, default=2)
        p.add_argument("--max-failures", type=int, default=1, help="worker-group restarts from the latest checkpoint")
        p.add_argument("--amp", choices=["bfloat16", "float16"], help="autocast dtype (GPU)")
        p.add_argument("--fail-at-step", type=int, help="raise after this step once (to see recovery)")
        p.add_argument("--embed-actors", type=int, default=1, help="Ray Data actors embedding items for hard-negative mining (0: in the driver)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--name", help="run name; an existing name resumes from its latest checkpoint")
        p.add_argument("--storage-path", help="where runs keep checkpoints (default LLMREC_HOME/runs)")
        p.add_argument("--output", help="model directory to write (default LLMREC_HOME/models/RUN)")
        if task == "reranker":
            p.add_argument("--random-negatives", type=float, default=1.0, help="share of negatives drawn at random from unseen items (the rest are mined hard ones)")
        p.set_defaults(func=cmd_train, task=task)

    p = train.add_parser("ranker", parents=[common], help="learn the served blend's weights per scene from the catalog's interactions (no Ray)")
    p.add_argument("--users", type=int, default=1000, help="users whose last 20%% of interactions are held out as targets")
    p.add_argument("--k", type=int, default=10, help="NDCG@k is what the weights maximise")
    p.add_argument("--modes", default="history,few,profile", help="request modes whose trained weights are served (the others keep the configured weights)")
    p.add_argument("--output", help="model directory to write (default LLMREC_HOME/models/ranker-CATALOG)")
    p.add_argument(
        "--context-attribute", help="also train each scene's context model, the contexts being this user profile attribute's values (e.g. age); requests name one in `context`"
    )
    p.add_argument(
        "--newcomers", action="store_true", help="also train each scene's newcomer model (what users chose after their profile and first interactions), one more signal"
    )
    p.set_defaults(func=lambda a: cmd_train_ranker(a, config_of(a)))

    p = train.add_parser("compare", parents=[common], help="Recall@20/NDCG@20 of encoders on cold items, users served from text (no Ray)")
    p.add_argument("--models", default="all-MiniLM-L6-v2", help="comma-separated encoder specs or directories")
    p.add_argument("--data", default="movielens-1m")
    p.add_argument("--part", choices=["cold_valid", "cold_test"], default="cold_test")
    p.add_argument("--users", type=int, default=1000, help="at most this many users (0: all)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.set_defaults(func=cmd_train_compare)

    p = bench.add_parser("train", parents=[common], help="training step and index-building throughput, next to raw sentence-transformers")
    p.add_argument("--steps", type=int, default=20, help="timed training steps (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--items", type=int, help="catalog items to embed (default: all, as an index build does)")
    p.add_argument("--embed-only", action="store_true", help="only the embedding rows (no training)")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers")
    p.add_argument("--actors", type=int, default=1, help="Ray Data encoder actors")
    p.add_argument("--use-gpu", action="store_true")
    p.set_defaults(func=lambda a: cmd_bench_train(a, config_of(a)))
