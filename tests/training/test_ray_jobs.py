"""The Ray jobs on the session's shared local Ray (conftest `local_ray`, 4 logical CPUs):
DDP fine-tuning that crashes and resumes, and the Ray Data index build that switches versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


def test_ddp_on_two_cpu_workers_crashes_resumes_by_run_name_and_exports_a_model_the_serving_encoder_loads(local_ray, movielens_1m, tmp_path):
    from llmrec.config import EncoderConfig
    from llmrec.serving.encoder import Encoder
    from llmrec.training.export import read_card
    from train.jobs import TrainJob, fit

    job = TrainJob(
        task="encoder", data="movielens-1m", num_workers=2, max_steps=6, batch_size=4, max_seq_length=32, max_pairs=64,
        val_users=8, checkpoint_every=2, log_every=2, fail_at_step=3, max_failures=0, zero_shot_baseline=False,
        embed_actors=0, name="ddp-resume", storage_path=str(tmp_path / "runs"), output=str(tmp_path / "model"),
    )
    with pytest.raises(Exception) as crash:  # no retries allowed: the injected failure ends the run
        fit(job)
    assert "injected failure after step 3" in str(crash.value)
    assert len([p for p in (tmp_path / "runs" / "ddp-resume").glob("checkpoint_*") if p.is_dir()]) == 1  # step 2's
    assert not (tmp_path / "model").exists()

    out = fit(job)  # same run name: resumes from step 2 (and, resumed, does not fail again)
    assert out["training"]["resumed_from_step"] == 2 and out["training"]["steps"] == 6
    assert [h["step"] for h in out["history"]] == [2, 4, 6]
    assert out["history"][0]["resumed_from_step"] is None and out["history"][-1]["resumed_from_step"] == 2
    assert 0.0 <= out["metrics"]["val_recall@20"] <= 1.0 and "val_ndcg@20" in out["metrics"]

    card = read_card(tmp_path / "model")
    assert card["data"]["catalog"] == "movielens-1m" and card["data"]["rows"] == 64 and card["split"]["seed"] == 42
    assert card["training"]["num_workers"] == 2 and card["training"]["train_seconds"] > 0
    tuned = Encoder(EncoderConfig(model=str(tmp_path / "model"), device="cpu"))
    texts = ["Movie: Toy Story. Year: 1995. Genres: Animation, Children's, Comedy.", "Liked: Fargo; Heat. About me: age 25-34."]
    base = Encoder(EncoderConfig(model=job.base_model, device="cpu"))  # the model training started from
    vectors, before = tuned.encode(texts), base.encode(texts)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * before, axis=1)
    assert np.all(cosine < 0.99999) and np.all(cosine > 0.5)  # trained, not replaced


@pytest.fixture
def small_catalog(movielens_1m, tmp_path, llmrec_home):
    from llmrec.data.catalog import Catalog

    catalog = Catalog("train-index-test", movielens_1m.scenes, movielens_1m.items.head(40))
    path = catalog.save(tmp_path / "catalog")
    yield path
    shutil.rmtree(llmrec_home / "indexes" / "train-index-test", ignore_errors=True)


def test_ray_data_index_build_publishes_a_new_version_the_retriever_loads_without_embedding(local_ray, small_catalog, tmp_path):
    from llmrec.config import EncoderConfig, PipelineConfig
    from llmrec.data.store import SQLiteStore
    from llmrec.index.vector_index import VectorIndex
    from llmrec.index.versions import current_version
    from llmrec.serving import retriever
    from llmrec.serving.encoder import Encoder
    from train.index_job import IndexJob, build_index

    config = PipelineConfig(catalog=str(small_catalog), encoder=EncoderConfig(max_seq_length=32, device="cpu"))
    first = build_index(config, IndexJob(actors=1, batch_size=16))
    root = first["path"]
    held = VectorIndex.load(Path(root) / "movie")  # a reader of the first version
    second = build_index(config, IndexJob(actors=1, batch_size=16))
    assert current_version(second["path"]) == second["version"] != first["version"]
    assert (Path(first["version_path"]) / "movie" / "index.faiss").is_file()  # kept, not rewritten
    assert first["indexes"] == second["indexes"] == {"movie": 40} and len(held) == 40

    from llmrec.data.catalog import load_catalog

    catalog = load_catalog(str(small_catalog))
    loaded = retriever.Retriever(config, catalog, SQLiteStore(tmp_path / "state.sqlite"), encoder=lambda: pytest.fail("the retriever re-embedded"))
    index = loaded.indexes["movie"]
    expected = Encoder(config.encoder).encode([loaded.items["Toy Story (1995)"].render()])[0]
    assert np.dot(index.vectors(["Toy Story (1995)"])[0], expected) > 0.9999
    assert index.search(expected, 1)[0][0] == "Toy Story (1995)"
