"""LLM item profiles with the packaged Qwen2.5-Coder-0.5B-Instruct: written from raw text, kept in a
resumable book, joined into the text the encoder and BM25 read, and written in the background for
items that arrive over the API with only their text."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from conftest import PACKAGED_LLM as MODEL
from conftest import require_packaged_llm

from llmrec.config import PipelineConfig, ProfilingConfig
from llmrec.data.catalog import Catalog
from llmrec.data.items import ItemRecord
from llmrec.data.store import SQLiteStore
from llmrec.profiling.book import ProfileBook, read_profiles
from llmrec.profiling.catalog import SHIPPED_PROFILES, catalog_sources, in_batches, profile_into, with_profiles
from llmrec.profiling.profile import ItemProfile, ItemSource, read_profile
from llmrec.profiling.profiler import Profiler
from llmrec.profiling.worker import ProfileWorker
from llmrec.serving.recommender import Recommender
from llmrec.serving.schemas import Filters, ItemIn, RecommendRequest

REVIEWS = {  # Amazon fine-food reviews (the demo's grocery text) and a word the product's name must have
    "tea": "This Green Tea from Yogi Tea is a plain, but far from ordinary green tea. The taste is incredible, I drink three cups a day.",
    "dog": "My two Labradors love this dry dog food from Blue Buffalo. Their coats are shiny and they finish every bowl.",
    "coffee": "Folgers classic roast ground coffee makes a smooth cup every morning; the big canister lasts me a month.",
}


@pytest.fixture(scope="module")
def profiler(llmrec_home):
    require_packaged_llm()
    return Profiler(ProfilingConfig(batch_size=4))


def review(item_id: str, text: str) -> ItemSource:
    return ItemSource(item_id, "grocery", text.split(".")[0], text, {"title_source": "review"})


def test_a_cut_off_answer_is_repaired_and_an_item_keeps_its_own_title():
    titled = ItemSource("m1", "movie", "Heat (1995)", "", {"genres": ["Crime"], "year": 1995})
    profile = read_profile('{"title": "Heat (1995)", "category": "crime thriller", "keywords": ["heist", "los angeles"], "summary": "A detective hunts a crew of', titled, MODEL)
    assert (profile.title, profile.category, profile.keywords) == ("Heat (1995)", "crime thriller", ("heist", "los angeles"))
    assert profile.summary == "A detective hunts a crew"  # cut back to its last whole word, not ended as if it were whole
    untitled = review("g1", REVIEWS["tea"])
    assert read_profile('{"title": "", "keywords": []}', untitled, MODEL) is None  # nothing usable: no profile
    assert read_profile("I cannot help with that.", untitled, MODEL) is None


def test_the_packaged_model_names_the_product_a_review_is_about(profiler):
    sources = [review(word, text) for word, text in REVIEWS.items()]
    profiles = profiler.profile(sources)
    for source, profile in zip(sources, profiles, strict=True):
        assert profile is not None, source.item_id
        assert source.item_id in profile.title.lower(), profile
        assert profile.title != source.title and len(profile.title.split()) <= 10
        assert profile.keywords and profile.key == source.key


def test_a_batch_decodes_each_item_exactly_as_it_decodes_alone(profiler):
    sources = [review(word, text) for word, text in REVIEWS.items()]
    alone = Profiler(ProfilingConfig(batch_size=1), generator=profiler.generator)  # the same loaded model, one item per batch
    assert profiler.profile(sources) == alone.profile(sources)


def test_a_profile_joins_the_text_the_encoder_and_bm25_read_and_a_changed_item_loses_it(demo_catalog):
    items = pd.DataFrame(  # two products as the demo's data has them: a review, its first sentence standing in for a title
        [{"item_id": f"g{n}", "scene": "grocery", "title": text.split(".")[0], "text": text, "attributes": '{"title_source": "review"}', "created_at": 0}
         for n, text in enumerate([REVIEWS["tea"], REVIEWS["dog"]])]
    )
    catalog = Catalog("profiled", demo_catalog.scenes, items)
    first = items.iloc[0]
    source = ItemSource(first.item_id, "grocery", first.title, first.text, json.loads(first.attributes))
    profile = ItemProfile("Yogi Green Tea", "green tea", ("green tea", "yogi"), "A box of Yogi green tea bags.", MODEL, source.key)
    joined, count = with_profiles(catalog, {profile.key: profile})
    assert count == 1
    row = joined.items.iloc[0]
    record = ItemRecord(row.item_id, row.scene, row.title, row.text, json.loads(row.attributes))
    assert record.title == "Yogi Green Tea" and record.attributes["category"] == "green tea"
    assert "Keywords: green tea, yogi. A box of Yogi green tea bags." in record.render() and first.text[:40] in record.render()
    assert joined.items.iloc[1].title == items.iloc[1].title  # no profile in the book: as it was
    echo = ItemProfile("Yogi Green Tea", "grocery", ("green tea",), "", MODEL, source.key)
    assert "category" not in json.loads(with_profiles(catalog, {echo.key: echo})[0].items.iloc[0].attributes)  # the scene's own name says nothing
    assert catalog_sources(joined) == catalog_sources(catalog)[1:]  # a profiled item is not profiled again
    changed = items.assign(text=items["text"] + " Edited.")
    assert with_profiles(Catalog("changed", demo_catalog.scenes, changed), {profile.key: profile})[1] == 0


def test_the_prepared_demo_shows_the_product_names_of_its_shipped_profiles(demo_catalog):
    grocery = demo_catalog.items[demo_catalog.items["scene"] == "grocery"]
    profiled = [row for row in grocery.itertuples() if json.loads(row.attributes).get("title_source") == "profile"]
    assert len(profiled) >= 0.99 * len(grocery)  # all but the few answers the parser could not read
    shipped = read_profiles(SHIPPED_PROFILES / "demo.jsonl.gz")
    for row in profiled:
        profile = shipped[json.loads(row.attributes)["profile"]["key"]]
        assert row.title == profile.title and row.text  # the raw review text stays


def test_a_stopped_profiling_job_resumes_from_its_book(profiler, tmp_path):
    sources = [review(f"g{n}", text) for n, text in enumerate(REVIEWS.values())]
    book = ProfileBook(tmp_path / "book.jsonl")
    calls = []

    def stops_after_one_batch(batch):
        if calls:
            raise KeyboardInterrupt  # the job is stopped while the second batch runs
        calls.append(len(batch))
        return profiler.profile(batch)

    with pytest.raises(KeyboardInterrupt):
        profile_into(sources, book, in_batches(stops_after_one_batch, 2))
    with open(book.path, "ab") as torn:
        torn.write('{"title": "Café au l'.encode()[:-2] + "é".encode()[:1])  # a crash mid-append: a torn line, a cut character
    reopened = ProfileBook(book.path)
    assert len(reopened) == 2
    summary = profile_into(sources, reopened, in_batches(profiler.profile, 2))
    assert (summary["already_profiled"], summary["written"]) == (2, 1)
    assert set(read_profiles(book.path)) == {s.key for s in sources}
    exported = tmp_path / "shipped.jsonl.gz"
    assert reopened.export(exported) == 3
    assert reopened.export(tmp_path / "again.jsonl.gz") == 3 and exported.read_bytes() == (tmp_path / "again.jsonl.gz").read_bytes()
    assert len(gzip.decompress(exported.read_bytes()).splitlines()) == 3
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(exported.read_bytes()[:-8])  # a shipped file cut short (its trailer lost): what it holds is still read
    assert len(read_profiles(cut)) == 3


@pytest.fixture()
def quiet(demo_catalog, encoder, tmp_path):
    """An in-process recommender of its own (its own store)."""
    config = PipelineConfig(profiling=ProfilingConfig(batch_size=4))
    return Recommender(config, demo_catalog, encoder=encoder, store=SQLiteStore(tmp_path / "state.db"))


def test_an_item_sent_with_only_text_is_recommendable_at_once_and_gets_its_profile_in_place(quiet, profiler):
    text = "Twinings English Breakfast black tea, 100 bags. Strong and malty, lovely with milk in the morning."
    quiet.add_items([ItemIn(item_id="new-tea", scene="grocery", text=text)])
    shortlist = RecommendRequest(query="black tea", scene="grocery", filters=Filters(item_ids=["new-tea"]), k=1)
    before = quiet.recommend(shortlist).items[0]
    assert before.title == "Twinings English Breakfast black tea, 100 bags."  # its first sentence stands in at once
    quiet.profiler = ProfileWorker(quiet.store, quiet.config.profiling, lambda: profiler)  # the module's loaded model
    assert quiet.profile_new_items() == 1 and quiet.profile_new_items() == 0  # written once, then nothing left to do
    record = quiet.items["new-tea"]
    assert record.attributes["title_source"] == "profile" and "tea" in record.title.lower() and record.title != before.title
    assert record.text == text and "Keywords: " in record.render()
    assert quiet.recommend(shortlist).items[0].title == record.title
    found = quiet.recommend(RecommendRequest(query=record.title, scene="grocery", k=10))
    assert "new-tea" in [i.item_id for i in found.items]


def test_a_client_write_during_profiling_wins_over_the_profile(quiet, profiler, tmp_path):
    replaced = ItemIn(item_id="racing", scene="grocery", title="Folgers Classic Roast, 48 oz", text=REVIEWS["coffee"])

    class WriteWhileProfiling(Profiler):
        def __init__(self) -> None:
            self.config = profiler.config

        def profile(self, sources):
            quiet.add_items([replaced])  # a client replaces the item while its profile is being generated
            return profiler.profile(sources)

    quiet.add_items([ItemIn(item_id="racing", scene="grocery", text=REVIEWS["coffee"])])
    assert ProfileWorker(quiet.store, quiet.config.profiling, WriteWhileProfiling).step() == 0
    quiet.sync()
    assert quiet.items["racing"].title == replaced.title and "profile" not in quiet.items["racing"].attributes

    class ClientWritesFirst(SQLiteStore):  # the worker's own connection, as in another process
        def upsert_items_if_latest(self, changes):
            quiet.add_items([replaced])  # lands after the worker's last look at the log, just before its write
            return super().upsert_items_if_latest(changes)

    quiet.add_items([ItemIn(item_id="racing", scene="grocery", text=REVIEWS["coffee"])])
    worker = ProfileWorker(ClientWritesFirst(quiet.store.path), quiet.config.profiling, lambda: profiler)
    assert worker.step() == 0  # the store refused the profile: it was written for an older state of the item
    quiet.sync()
    assert quiet.items["racing"].title == replaced.title and "profile" not in quiet.items["racing"].attributes
    assert worker.step() == 0  # the client's version has a title of its own: nothing more to profile
