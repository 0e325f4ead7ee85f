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
    from llmrec.catalog import catalog_dir, load_catalog
    from llmrec.datasets import prepare

    if not (catalog_dir("demo") / "manifest.json").is_file():
        prepare("demo")
    return load_catalog("demo")


@pytest.fixture(scope="session")
def encoder():
    from llmrec.encoder import Encoder

    return Encoder()


@pytest.fixture(scope="session")
def demo_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state") / "demo.sqlite"


@pytest.fixture(scope="session")
def demo(demo_catalog, encoder, demo_store_path: Path):
    """The demo recommender with real MiniLM indexes (built once, then loaded from LLMREC_HOME)."""
    from llmrec.config import PipelineConfig
    from llmrec.recommender import Recommender
    from llmrec.store import Store

    return Recommender(PipelineConfig(), catalog=demo_catalog, encoder=encoder, store=Store(demo_store_path))


@pytest.fixture(scope="session")
def local_ray(llmrec_home: Path):
    """One local Ray for every test that needs a real one (Serve apps, Train jobs)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=4, namespace="serve", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
