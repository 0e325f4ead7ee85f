"""Shared, session-scoped real assets: one LLMREC_HOME, the demo catalog, one encoder, one recommender.

LLMREC_HOME for tests is `.llmrec/test-home` in the checkout (or LLMREC_TEST_HOME), so downloads,
prepared catalogs and embedded indexes are reused across local runs; CI starts from a clean clone.
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


@pytest.fixture(scope="session")
def llmrec_home() -> Path:
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    return TEST_HOME


@pytest.fixture(scope="session")
def demo_catalog(llmrec_home: Path):
    from llmrec.data.catalog import catalog_dir, load_catalog
    from llmrec.data.datasets import prepare

    if not (catalog_dir("demo") / "manifest.json").is_file():
        prepare("demo")
    return load_catalog("demo")


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


@pytest.fixture(scope="session")
def exported_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder directory as `llmrec train reranker` exports it (MiniLM, nudged weights)."""
    from llmrec.data.assets import resolve_model
    from llmrec.training.export import export_cross_encoder
    from llmrec.training.model import CrossScorer

    base = resolve_model("all-MiniLM-L6-v2")
    scorer = CrossScorer(base)
    nudge_weights(scorer)
    directory = tmp_path_factory.mktemp("models") / "reranker"
    export_cross_encoder(scorer.state_dict(), base, directory, {})
    return directory


@pytest.fixture(scope="session")
def demo_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state") / "demo.sqlite"


@pytest.fixture(scope="session")
def demo(demo_catalog, encoder, demo_store_path: Path):
    """The demo recommender with real MiniLM indexes (built once, then loaded from LLMREC_HOME)."""
    from llmrec.config import PipelineConfig
    from llmrec.data.store import SQLiteStore
    from llmrec.serving.recommender import Recommender

    return Recommender(PipelineConfig(), catalog=demo_catalog, encoder=encoder, store=SQLiteStore(demo_store_path))


@pytest.fixture(scope="session")
def local_ray(llmrec_home: Path):
    """One local Ray for every test that needs a real one (Serve apps, Train jobs)."""
    ray = pytest.importorskip("ray")
    from deployments.local import SERVE_ENV

    os.environ.update(SERVE_ENV)  # the Serve apps in the tests run as `llmrec serve` runs them
    if not ray.is_initialized():
        ray.init(num_cpus=4, namespace="serve", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a Unix socket (initdb + pg_ctl from the system's packages)."""
    import shutil
    import socket
    import subprocess
    import tempfile

    psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) are not on PATH: install postgresql to run these tests")
    root = Path(tempfile.mkdtemp(prefix="llmrec-pg-"))  # not under pytest's 0700 tree: the server user must reach it
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the packages' postgres user
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "llmrec", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=''"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-o", options, "start"], check=True, capture_output=True)
    try:
        with psycopg.connect(f"postgresql://llmrec@/postgres?host={root}&port={port}", autocommit=True) as admin:
            admin.execute("CREATE DATABASE llmrec")
        yield f"postgresql://llmrec@/llmrec?host={root}&port={port}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
