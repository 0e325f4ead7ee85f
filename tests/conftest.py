"""Shared, session-scoped real assets: one LLMREC_HOME, the demo catalog, one encoder, one recommender.

LLMREC_HOME for tests is `.llmrec/test-home` in the checkout (or LLMREC_TEST_HOME), so downloads,
prepared catalogs and embedded indexes are reused across local runs; CI starts from a clean clone.

Skips: a test may skip only for a reason that starts with one of ALLOWED_SKIPS (what cannot run on
this machine, or what the run chose to leave out). Under CI (CI=true) or LLMREC_STRICT_SKIPS=1 any
other skip fails the session; every skip is listed, with its reason, at the end of the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_HOME = Path(os.environ.get("LLMREC_TEST_HOME", REPO / ".llmrec" / "test-home"))
os.environ["LLMREC_HOME"] = str(TEST_HOME)
TEST_API_KEY = "test-admin-key"
os.environ["LLMREC_API_KEY"] = TEST_API_KEY  # before any Ray starts: replicas inherit the environment
# The default profile runs the intent LLM; the suite routes free text by embedding except where a test
# asks for a backend (tests/intent, tests/serving/test_default_profile.py), so it stays within CI's time.
os.environ.setdefault("LLMREC__INTENT__BACKEND", "none")

ALLOWED_SKIPS = (
    "GPU only:",  # needs a CUDA device; none on the CPU machines
    "VLLM_CPU=0:",  # the run left out the model backends on purpose (make test VLLM_CPU=0)
    "not in this venv:",  # the vllm backend tests run in .venv-vllm, driven by test_vllm_backend_in_its_own_venv
)


def strict_skips() -> bool:
    """CI sets CI=true; LLMREC_STRICT_SKIPS=1 asks for the same locally."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get("LLMREC_STRICT_SKIPS") == "1"


_skips: list[tuple[str, str]] = []  # (test or collected file, reason), in the order they happened


def _record_skip(report) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    _skips.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_runtest_logreport(report) -> None:
    _record_skip(report)


def pytest_collectreport(report) -> None:  # a module-level skip skips a whole file at collection
    _record_skip(report)


def _unexpected() -> list[tuple[str, str]]:
    return [(node, reason) for node, reason in _skips if not reason.startswith(ALLOWED_SKIPS)]


def pytest_sessionfinish(session, exitstatus) -> None:
    if strict_skips() and _unexpected() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _skips:
        return
    terminalreporter.section("skips")
    for node, reason in _skips:
        mark = "allowed   " if reason.startswith(ALLOWED_SKIPS) else "UNEXPECTED"
        terminalreporter.write_line(f"{mark} {node}: {reason}")
    unexpected = _unexpected()
    if unexpected and strict_skips():
        terminalreporter.write_line(
            f"{len(unexpected)} unexpected skip(s): this run fails (CI or LLMREC_STRICT_SKIPS=1). Allowed reasons start with {' / '.join(ALLOWED_SKIPS)}",
            red=True, bold=True,
        )


@pytest.fixture(scope="session")
def llmrec_home() -> Path:
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    return TEST_HOME


@pytest.fixture(scope="session")
def movielens_1m(llmrec_home):
    """MovieLens 1M, prepared once into the test home."""
    from llmrec.data.catalog import catalog_dir, load_catalog
    from llmrec.data.datasets import prepare

    if not (catalog_dir("movielens-1m") / "manifest.json").is_file():
        prepare("movielens-1m")
    return load_catalog("movielens-1m")


@pytest.fixture(scope="session")
def demo_catalog(llmrec_home: Path):
    """The demo catalog prepared afresh each session (seconds), so a test home kept between runs
    never serves data older than the code's (the shipped profiles change); indexes are keyed by
    content and are rebuilt only when it changed."""
    from llmrec.data.catalog import load_catalog
    from llmrec.data.datasets import prepare

    prepare("demo")
    return load_catalog("demo")  # as every other reader sees it


PACKAGED_LLM = "qwen2.5-coder-0.5b-instruct"


def require_packaged_llm() -> None:
    """Skip unless the packaged language model is prepared (`make test` prepares it, as `make run` does)."""
    from llmrec.data.assets import models_dir

    if not (models_dir() / PACKAGED_LLM / "config.json").is_file():
        if os.environ.get("VLLM_CPU") == "0":
            pytest.skip(f"VLLM_CPU=0: the run left out the model backends, and {PACKAGED_LLM} is not prepared")
        pytest.skip(f"{PACKAGED_LLM} is not prepared (llmrec models prepare {PACKAGED_LLM})")


@pytest.fixture(scope="session")
def encoder():
    from llmrec.serving.encoder import Encoder

    return Encoder()


def nudge_weights(model) -> None:
    """Stand-in for training a model in a test: change every weight a little, reproducibly."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))


OLD_FILM_YEAR = 1965  # the trained test reranker prefers films from before this year


def films(catalog, before: int | None = None, since: int | None = None) -> list:
    """The catalog's movies (as ItemRecords) from before or since a year."""
    import json

    from llmrec.data.items import ItemRecord

    movies = catalog.items[catalog.items["scene"] == "movie"]
    records = [ItemRecord(r.item_id, r.scene, r.title, r.text, json.loads(r.attributes)) for r in movies.itertuples()]
    return [r for r in records if (before is None or r.attributes.get("year", before) < before) and (since is None or r.attributes.get("year", 0) >= since)]


@pytest.fixture(scope="session")
def exported_reranker(demo_catalog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder really trained (`llmrec train reranker`'s loop and export, 36 steps on MiniLM) to
    prefer films from before 1965 to films since 1990, whatever the request says: a learned preference
    the tests can see in a served ranking, which a broken scorer or a blend that ignores it would lose."""
    import numpy as np

    from llmrec.data.assets import resolve_model
    from llmrec.training.export import export_cross_encoder
    from llmrec.training.loop import LocalHooks, LoopConfig, load_state, train_loop

    rng = np.random.default_rng(0)
    queries = ["a film", "something to watch tonight", "a movie for the weekend", "recommend me a movie"]
    old, new = films(demo_catalog, before=OLD_FILM_YEAR), films(demo_catalog, since=1990)
    pairs = [(queries[i % 4], r.render(), 1.0) for i, r in enumerate(rng.choice(old, 48, replace=False))]
    pairs += [(queries[i % 4], r.render(), 0.0) for i, r in enumerate(rng.choice(new, 48, replace=False))]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    base = resolve_model("all-MiniLM-L6-v2")
    root = tmp_path_factory.mktemp("models")
    hooks = LocalHooks({"text_a": [p[0] for p in pairs], "text_b": [p[1] for p in pairs], "label": [p[2] for p in pairs]}, 8, checkpoint_root=root / "run")
    config = LoopConfig(task="reranker", base_model=base, max_steps=36, batch_size=8, max_seq_length=64, lr=1e-4, warmup_steps=3, checkpoint_every=36, log_every=12)
    train_loop(config, hooks)
    return export_cross_encoder(load_state(hooks.last_checkpoint)["model"], base, root / "reranker", {"trained_on": "films before 1965 over films since 1990"})


@pytest.fixture(scope="session")
def demo_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state") / "demo.sqlite"


def _demo_recommender(catalog, encoder, store_path: Path):
    from llmrec.config import PipelineConfig
    from llmrec.data.store import SQLiteStore
    from llmrec.serving.recommender import Recommender

    return Recommender(PipelineConfig(), catalog=catalog, encoder=encoder, store=SQLiteStore(store_path))


@pytest.fixture(scope="session")
def demo(demo_catalog, encoder, demo_store_path: Path):
    """The demo recommender with real indexes of the default encoder (built once, then loaded from
    LLMREC_HOME), shared by the whole session and therefore read-only: a test that writes items or
    events takes `writable_demo`, so no test's answer depends on which tests ran before it."""
    recommender = _demo_recommender(demo_catalog, encoder, demo_store_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the session's demo recommender is read-only: write through the writable_demo fixture")

    recommender.add_items = recommender.record_events = recommender.remove_items = refuse
    return recommender


@pytest.fixture(scope="module")
def writable_demo(demo, demo_catalog, encoder, tmp_path_factory: pytest.TempPathFactory):
    """A demo recommender of this test module's own, over a fresh store, for tests that write."""
    return _demo_recommender(demo_catalog, encoder, tmp_path_factory.mktemp("writable") / "demo.sqlite")


@pytest.fixture(scope="session")
def local_ray(llmrec_home: Path):
    """One local Ray for every test that needs a real one (Serve apps, Train jobs)."""
    import ray

    from deployments.local import use_serve_env

    use_serve_env()  # the Serve apps in the tests run as `llmrec serve` runs them
    if not ray.is_initialized():
        # address="local": a new instance of its own, never a cluster another run left behind (a killed
        # `llmrec bench faults` leaves /tmp/ray/ray_current_cluster, and every later test would fail to join it)
        ray.init(address="local", num_cpus=4, namespace="serve", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (initdb + pg_ctl from the system's packages), database `llmrec`."""
    from llmrec.bench.postgres import PostgresServer

    try:
        server = PostgresServer.create()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    return postgres_server.url
