"""Saved indexes: reused only when their key matches and their files check out; rebuilt otherwise,
always as a new published version (a build that was served from is never written into)."""

from __future__ import annotations

import shutil

import pytest

from llmrec.config import IndexConfig, PipelineConfig
from llmrec.data.catalog import Catalog
from llmrec.data.store import SQLiteStore
from llmrec.index.build import index_dir
from llmrec.index.versions import current_version
from llmrec.serving.retriever import Retriever


@pytest.fixture
def catalog(demo_catalog, llmrec_home, request):
    name = f"cache-test-{request.node.name[:40]}"
    shutil.rmtree(llmrec_home / "indexes" / name, ignore_errors=True)
    yield Catalog(name, demo_catalog.scenes, demo_catalog.items[demo_catalog.items["scene"] == "movie"].head(30))
    shutil.rmtree(llmrec_home / "indexes" / name, ignore_errors=True)


class Embeds:
    """An encoder factory that counts how often the retriever needed to embed."""

    def __init__(self, encoder) -> None:
        self.encoder, self.calls = encoder, 0

    def __call__(self):
        self.calls += 1
        return self.encoder


def start(catalog, config, tmp_path, encoder) -> tuple[Retriever, Embeds]:
    embeds = Embeds(encoder)
    return Retriever(config, catalog, SQLiteStore(tmp_path / "state.sqlite"), embeds), embeds


def answers(retriever: Retriever, encoder) -> list[str]:
    query = encoder.encode(["a family comedy"])[0]
    return [i for i, _ in retriever.indexes["movie"].search(query, 5)]


@pytest.mark.parametrize("damage", ["truncate index.faiss", "delete ids.json", "garble meta.json"])
def test_a_damaged_saved_index_is_rebuilt_as_a_new_version_and_served(catalog, tmp_path, encoder, damage):
    config = PipelineConfig()
    first, _ = start(catalog, config, tmp_path, encoder)
    expected = answers(first, encoder)
    root = index_dir(catalog.name, config.encoder.model)
    version = current_version(root)
    movie = root / "movie"
    if damage == "truncate index.faiss":
        data = (movie / "index.faiss").read_bytes()
        (movie / "index.faiss").write_bytes(data[: len(data) // 2])
    elif damage == "delete ids.json":
        (movie / "ids.json").unlink()
    else:
        (movie / "meta.json").write_text('{"format_version": ')
    second, embeds = start(catalog, config, tmp_path, encoder)
    assert embeds.calls == 1  # it embedded again instead of crashing or serving the damaged build
    assert answers(second, encoder) == expected
    assert current_version(root) != version


def test_an_unchanged_key_loads_without_embedding(catalog, tmp_path, encoder):
    config = PipelineConfig()
    start(catalog, config, tmp_path, encoder)
    second, embeds = start(catalog, config, tmp_path, encoder)
    assert embeds.calls == 0 and len(second.indexes["movie"]) == 30


@pytest.mark.parametrize("change", ["catalog", "encoder sequence length", "index kind"])
def test_a_changed_key_rebuilds_and_never_rewrites_the_published_version(catalog, tmp_path, encoder, change):
    config = PipelineConfig()
    start(catalog, config, tmp_path, encoder)
    root = index_dir(catalog.name, config.encoder.model)
    old = root / "versions" / current_version(root) / "movie"
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    if change == "catalog":
        items = catalog.items.copy()
        items.loc[items.index[0], "title"] = "A Renamed Film"
        catalog = Catalog(catalog.name, catalog.scenes, items)
    elif change == "encoder sequence length":
        config = config.model_copy(update={"encoder": config.encoder.model_copy(update={"max_seq_length": 64})})
    else:
        config = config.model_copy(update={"index": IndexConfig(kind="ivf")})
    _, embeds = start(catalog, config, tmp_path, encoder if change != "encoder sequence length" else _encoder_for(config))
    assert embeds.calls == 1
    assert old.is_dir() and {p.name: p.read_bytes() for p in old.iterdir()} == before


def _encoder_for(config: PipelineConfig):
    from llmrec.serving.encoder import Encoder

    return Encoder(config.encoder)
