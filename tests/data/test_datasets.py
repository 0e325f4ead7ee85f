"""The public-format readers (Amazon Reviews 2023, MIND, Goodreads) on small fixtures in the real formats."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from llmrec.data.catalog import Catalog
from llmrec.data.datasets import amazon, goodreads, mind
from llmrec.errors import AssetError

FIXTURES = Path(__file__).parent / "fixtures"
AMAZON, MIND, GOODREADS = FIXTURES / "amazon", FIXTURES / "mind", FIXTURES / "goodreads"


def item(catalog: Catalog, item_id: str) -> dict:
    row = catalog.items.set_index("item_id").loc[item_id]
    return {**row.to_dict(), "attributes": json.loads(row["attributes"])}


def ratings(catalog: Catalog) -> dict[tuple[str, str], tuple[float, int]]:
    frame = catalog.interactions
    return {(u, i): (r, t) for u, i, r, t in zip(frame["user_id"], frame["item_id"], frame["rating"], frame["timestamp"])}


@pytest.fixture(scope="module")
def amazon_catalog() -> Catalog:
    return amazon.load(AMAZON)


@pytest.fixture(scope="module")
def mind_catalog() -> Catalog:
    return mind.load(MIND)


@pytest.fixture(scope="module")
def goodreads_catalog() -> Catalog:
    return goodreads.load(GOODREADS)


# Amazon Reviews 2023


def test_amazon_each_category_is_a_scene_described_by_its_subcategories(amazon_catalog: Catalog) -> None:
    scenes = amazon_catalog.scenes.set_index("scene")
    assert list(scenes.index) == ["all_beauty", "video_games"]
    assert scenes.loc["video_games", "name"] == "Video Games"
    assert scenes.loc["video_games", "description"] == (
        "Video Games products sold on Amazon, such as Nintendo Switch, Accessories, Controllers, Games."
    )
    assert scenes.loc["all_beauty", "description"].startswith("All Beauty products sold on Amazon, such as Skin Care, Face")


def test_amazon_items_are_parent_asins_with_title_text_and_attributes_from_metadata(amazon_catalog: Catalog) -> None:
    assert amazon_catalog.summary()["scenes"] == {
        "all_beauty": {"items": 6, "interactions": 6},
        "video_games": {"items": 2, "interactions": 3},
    }
    mask = item(amazon_catalog, "B097R46CSY")  # reviewed as variants B07PNNCSP9, B09JS339BZ, B07PNNCSP8
    assert mask["title"] == "Crème Fraîche Hydrating Face Mask – 日本製 ✨"
    assert mask["text"] == "Crème fraîche & rice bran Made in Japan"
    assert mask["attributes"] == {
        "average_rating": 3.5,
        "categories": ["Beauty & Personal Care", "Skin Care", "Face", "Masks"],
        "main_category": "All Beauty",
        "rating_number": 2,
        "store": "Maison Lumière",
    }
    shampoo = item(amazon_catalog, "B081TJ8YS3")
    assert shampoo["text"] == "Refreshes hair between washes. Absorbs excess oil without chemicals Vegan and cruelty free"


def test_amazon_reads_gzipped_metadata(amazon_catalog: Catalog) -> None:
    assert (AMAZON / "meta_All_Beauty.jsonl.gz").is_file() and not (AMAZON / "meta_All_Beauty.jsonl").exists()
    assert item(amazon_catalog, "B00YQ6X8EO")["title"] == "Herbivore - Natural Sea Mist Texturizing Salt Spray (Coconut)"


def test_amazon_price_is_a_float_when_it_parses_else_the_text_and_none_is_dropped(amazon_catalog: Catalog) -> None:
    assert item(amazon_catalog, "B00YQ6X8EO")["attributes"]["price"] == 24.0
    assert item(amazon_catalog, "B081TJ8YS3")["attributes"]["price"] == 12.99  # "$12.99" in the file
    assert item(amazon_catalog, "B00ZQB28XK")["attributes"]["price"] == "from 59.99"
    assert "price" not in item(amazon_catalog, "B097R46CSY")["attributes"]  # null
    assert "price" not in item(amazon_catalog, "B07ZLD4NP1")["attributes"]  # "None"


def test_amazon_created_at_is_date_first_available_else_zero(amazon_catalog: Catalog) -> None:
    assert item(amazon_catalog, "B01N3ASPNV")["created_at"] == 1488499200  # March 3, 2017
    assert item(amazon_catalog, "B097R46CSY")["created_at"] == 0  # "not a date"
    assert item(amazon_catalog, "B081TJ8YS3")["created_at"] == 0  # no such detail


def test_amazon_text_is_capped(amazon_catalog: Catalog) -> None:
    controller = item(amazon_catalog, "B01N3ASPNV")
    assert len(controller["text"]) <= amazon.MAX_TEXT_CHARS
    assert controller["text"].startswith("Take your game sessions up a notch with the Pro Controller.")


def test_amazon_reviewed_item_without_metadata_is_kept_and_marked(amazon_catalog: Catalog) -> None:
    brush = item(amazon_catalog, "B0BXK2Q9ZP")
    assert (brush["scene"], brush["title"], brush["text"], brush["created_at"]) == ("all_beauty", "B0BXK2Q9ZP", "", 0)
    assert brush["attributes"] == {"no_metadata": True}  # reviewed, absent from meta_All_Beauty
    assert ratings(amazon_catalog)[("AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "B0BXK2Q9ZP")] == (2.0, 1612345678)


def test_amazon_item_with_metadata_but_no_reviews_is_kept(amazon_catalog: Catalog) -> None:
    assert item(amazon_catalog, "B01MRWTNR0")["title"] == "Rose Water Facial Toner Spray"
    assert "B01MRWTNR0" not in set(amazon_catalog.interactions["item_id"])


def test_amazon_item_in_two_categories_belongs_to_the_first_and_keeps_both_reviews(amazon_catalog: Catalog) -> None:
    polish = item(amazon_catalog, "B07ZLD4NP1")
    assert (polish["scene"], polish["title"]) == ("all_beauty", "The Legend of Zelda Triforce Nail Polish Set (3 colors)")
    assert ratings(amazon_catalog)[("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B07ZLD4NP1")] == (5.0, 1577836800)  # a Video_Games review


def test_amazon_duplicate_reviews_keep_the_earliest_per_user_and_product(amazon_catalog: Catalog) -> None:
    # B097R46CSY: an exact duplicate line and a later review of another variant by the same user.
    by_pair = ratings(amazon_catalog)
    assert by_pair[("AE74DYR3QUGVPZJ3P7RFWBGIX7XQ", "B097R46CSY")] == (1.0, 1589665266)
    assert len(amazon_catalog.interactions) == len(by_pair) == 9


def test_amazon_skips_reviews_without_user_and_timestamps_are_seconds(amazon_catalog: Catalog) -> None:
    assert "" not in set(amazon_catalog.interactions["user_id"])
    assert ratings(amazon_catalog)[("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B00YQ6X8EO")] == (5.0, 1588687728)
    assert list(amazon_catalog.interactions["timestamp"]) == sorted(amazon_catalog.interactions["timestamp"])


def test_amazon_users_are_the_distinct_reviewers_with_empty_attributes(amazon_catalog: Catalog) -> None:
    assert set(amazon_catalog.users["user_id"]) == {
        "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
        "AE74DYR3QUGVPZJ3P7RFWBGIX7XQ",
        "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ",
        "AHX5WZAI2VRX6TFOVNAUNMYWMB3Q",
    }
    assert amazon_catalog.users["user_id"].is_unique
    assert set(amazon_catalog.users["attributes"]) == {"{}"}


def test_amazon_reads_only_the_listed_categories_by_name_or_scene_id() -> None:
    catalog = amazon.load(AMAZON, categories=["video_games"])
    assert list(catalog.scenes["scene"]) == ["video_games"]
    assert sorted(catalog.items["item_id"]) == ["B00ZQB28XK", "B01N3ASPNV", "B07ZLD4NP1"]
    assert item(catalog, "B07ZLD4NP1")["title"] == "The Legend of Zelda Triforce Nail Polish Set"
    assert list(amazon.load(AMAZON, name="beauty", categories=["All_Beauty"]).scenes["scene"]) == ["all_beauty"]


def test_amazon_unknown_category_names_the_expected_files() -> None:
    with pytest.raises(AssetError, match=r"\['Books'\].*<Category>\.jsonl and meta_<Category>\.jsonl"):
        amazon.load(AMAZON, categories=["Books"])


def test_amazon_reads_a_gzipped_reviews_file(tmp_path: Path) -> None:
    shutil.copy(AMAZON / "meta_Video_Games.jsonl", tmp_path)
    with gzip.open(tmp_path / "Video_Games.jsonl.gz", "wb") as gz:
        gz.write((AMAZON / "Video_Games.jsonl").read_bytes())
    assert ratings(amazon.load(tmp_path)) == ratings(amazon.load(AMAZON, categories=["Video_Games"]))


# MIND


def test_mind_merges_train_and_dev_with_news_read_once(mind_catalog: Catalog) -> None:
    assert len(mind_catalog.items) == 9 and mind_catalog.items["item_id"].is_unique
    assert "N31801" in set(mind_catalog.items["item_id"])  # only in dev/news.tsv
    assert "N13" in set(mind_catalog.items["item_id"])  # only in train/news.tsv


def test_mind_news_items_have_title_abstract_and_entity_labels(mind_catalog: Catalog) -> None:
    royals = item(mind_catalog, "N55528")
    assert royals["scene"] == "news"
    assert royals["title"] == "The Brands Queen Elizabeth, Prince Charles, and Prince Philip Swear By"
    assert royals["text"] == "Shop the notebooks, jackets, and more that the royals can't live without."
    assert royals["attributes"] == {
        "category": "lifestyle",
        "subcategory": "lifestyleroyals",
        "entities": ["Prince Philip, Duke of Edinburgh", "Charles, Prince of Wales", "Elizabeth II"],
    }
    assert item(mind_catalog, "N38324")["attributes"]["entities"] == ["Skin tag"]  # listed twice in the file
    assert item(mind_catalog, "N13")["title"] == 'Kyler Murray: "We\'re going to be fine" after loss to 49ers'
    assert item(mind_catalog, "N31801")["attributes"]["entities"] == ["Beyoncé", "Jay-Z"]


def test_mind_row_without_abstract_or_trailing_field_still_reads(mind_catalog: Catalog) -> None:
    creme = item(mind_catalog, "N44")
    assert (creme["title"], creme["text"]) == ("Crème brûlée: the 5-ingredient dessert that's easier than you think", "")
    assert creme["attributes"] == {"category": "foodanddrink", "subcategory": "recipes"}


def test_mind_scene_description_lists_the_categories_present(mind_catalog: Catalog) -> None:
    description = mind_catalog.scenes.set_index("scene").loc["news", "description"]
    assert description.startswith("News articles to read from Microsoft News (MSN): health, sports,")
    assert "food and drink" in description and "entertainment" in description


def test_mind_interactions_are_history_and_labelled_clicks_only(mind_catalog: Catalog) -> None:
    by_pair = ratings(mind_catalog)
    assert by_pair[("U13740", "N55528")] == (1.0, 1573463158)  # history, first row 11/11/2019 9:05:58 AM
    assert by_pair[("U13740", "N61837")] == (1.0, 1573463158)  # impression N61837-1 in that row
    assert by_pair[("U73700", "N44")] == (1.0, 1573770251)  # empty history, clicked 11/14/2019 10:24:11 PM
    assert ("U73700", "N2073") not in by_pair  # N2073-0: shown, not clicked
    assert "U34670" not in set(mind_catalog.users["user_id"])  # never clicked anything
    assert set(mind_catalog.interactions["rating"]) == {1.0}
    assert len(by_pair) == len(mind_catalog.interactions) == 10


def test_mind_repeated_clicks_keep_the_earliest(mind_catalog: Catalog) -> None:
    by_pair = ratings(mind_catalog)
    assert by_pair[("U91836", "N19639")] == (1.0, 1573582290)  # train 11/12 6:11:30 PM, not dev 11/15
    assert by_pair[("U13740", "N53526")] == (1.0, 1573631535)  # clicked 11/13, after being skipped on 11/11


def test_mind_clicks_on_news_missing_from_news_tsv_are_dropped(mind_catalog: Catalog) -> None:
    assert "N55189" not in set(mind_catalog.interactions["item_id"])


def test_mind_created_at_is_first_shown_in_an_impression(mind_catalog: Catalog) -> None:
    assert item(mind_catalog, "N61837")["created_at"] == 1573463158
    assert item(mind_catalog, "N2073")["created_at"] == 1573770251  # train 11/14 before dev 11/15
    assert item(mind_catalog, "N13")["created_at"] == 0  # never shown


def test_mind_reads_files_directly_in_source() -> None:
    catalog = mind.load(MIND / "train")
    assert len(catalog.items) == 8 and len(catalog.interactions) == 7
    assert "N31801" not in set(catalog.items["item_id"])


def test_mind_split_lacking_behaviors_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    shutil.copy(MIND / "train" / "news.tsv", tmp_path / "train")
    with pytest.raises(AssetError, match="lacks behaviors.tsv"):
        mind.load(tmp_path)


# Goodreads


def test_goodreads_books_have_authors_shelves_and_publication_details(goodreads_catalog: Catalog) -> None:
    elegies = item(goodreads_catalog, "1384")
    assert (elegies["scene"], elegies["title"]) == ("books", "Duino Elegies")
    assert elegies["text"].startswith("Rilke's ten elegies")
    assert elegies["attributes"] == {
        "authors": ["Rainer Maria Rilke", "Stephen Mitchell"],
        "year": 2009,
        "publisher": "Vintage",
        "language": "eng",
        "num_pages": 128,
        "shelves": ["poetry", "favorites", "german", "classics", "philosophy"],  # no to-read, currently-reading, read
        "average_rating": 4.28,
    }
    assert elegies["created_at"] == 1230768000  # 2009, month and day unknown
    assert item(goodreads_catalog, "12345")["created_at"] == 1062374400  # 2003-09-01
    assert item(goodreads_catalog, "27494")["created_at"] == -3613161600  # 1855-07-04


def test_goodreads_book_with_unknown_author_and_missing_fields(goodreads_catalog: Catalog) -> None:
    basho = item(goodreads_catalog, "470")
    assert (basho["title"], basho["text"], basho["created_at"]) == ("奥の細道 [Oku no Hosomichi]", "", 0)
    assert basho["attributes"] == {  # author 38285 is not in goodreads_book_authors; no year, pages, publisher
        "authors": ["38285"],
        "language": "jpn",
        "shelves": ["poetry", "japan", "haiku"],
        "average_rating": 4.05,
    }


def test_goodreads_keeps_rated_or_read_shelvings_earliest_first(goodreads_catalog: Catalog) -> None:
    u1 = "8842281e1d1347389f2ab93d60773d4d"
    u2 = "72fb0d0087d28c832f15776b0d936598"
    u3 = "ab2923b738ea3082f5f3efcbbfacb218"
    assert ratings(goodreads_catalog) == {
        (u1, "1384"): (5.0, 1483613062),  # Thu Jan 05 02:44:22 -0800 2017; the later rating 4 is dropped
        (u1, "470"): (0.0, 1479571390),  # read, not rated
        (u2, "22"): (4.0, 1470084117),
        (u2, "12345"): (3.0, 1483161300),
        (u3, "22"): (5.0, 1497200700),  # rated without being marked read
    }  # gone: to-read only (u1 12345, u3 1384) and a book not in the books file (u2 99999999)
    assert sorted(goodreads_catalog.users["user_id"]) == sorted([u1, u2, u3])


def test_goodreads_scene_description_lists_popular_shelves(goodreads_catalog: Catalog) -> None:
    description = goodreads_catalog.scenes.set_index("scene").loc["books", "description"]
    assert description.startswith("Books to read, from Goodreads: poetry, favorites, classics")


def test_goodreads_without_authors_file_shows_author_ids(tmp_path: Path) -> None:
    for name in ("goodreads_books_poetry.json", "goodreads_interactions_poetry.json"):
        shutil.copy(GOODREADS / name, tmp_path)
    assert item(goodreads.load(tmp_path), "1384")["attributes"]["authors"] == ["7906", "4045"]


# All readers


READERS = [(amazon.load, AMAZON), (mind.load, MIND), (goodreads.load, GOODREADS)]


@pytest.mark.parametrize(("load", "source"), READERS, ids=["amazon", "mind", "goodreads"])
def test_catalog_round_trips_through_save_and_load(load, source: Path, tmp_path: Path) -> None:
    catalog = load(source)
    loaded = Catalog.load(catalog.save(tmp_path / "catalog"))
    assert loaded.name == catalog.name
    for table in ("scenes", "items", "users", "interactions", "kg"):
        pd.testing.assert_frame_equal(getattr(loaded, table), getattr(catalog, table))


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (amazon.load, r"<Category>\.jsonl and meta_<Category>\.jsonl"),
        (mind.load, r"news\.tsv and behaviors\.tsv"),
        (goodreads.load, r"goodreads_books\*\.json and goodreads_interactions\*\.json"),
    ],
    ids=["amazon", "mind", "goodreads"],
)
def test_missing_files_raise_asset_error_naming_them(load, expected: str, tmp_path: Path) -> None:
    (tmp_path / "unrelated.txt").write_text("not a data file")
    with pytest.raises(AssetError, match=expected):
        load(tmp_path)
    with pytest.raises(AssetError, match=expected):
        load(tmp_path / "does-not-exist")
