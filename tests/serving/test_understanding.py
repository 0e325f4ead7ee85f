"""The parsed request shapes the answer: stated years filter, ruled-out genres are left out, a
named item ("like Se7en") leads to what is similar to it, never to it, and a request is pulled
toward the genres it reads like, in Chinese as in English."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.items import ItemRecord, allow_filter
from llmrec.intent.rules import fallback_intent, rule_exclusions
from llmrec.serving.schemas import Filters, Range, RecommendRequest
from llmrec.serving.understanding import CategoryPull, SceneFacts, category_texts, title_keys, understand

MOVIES = [
    ItemRecord("Seven (Se7en) (1995)", "movie", "Seven (Se7en)", attributes={"genres": ["Crime", "Thriller"], "year": 1995}),
    ItemRecord("Godfather, The (1972)", "movie", "The Godfather", attributes={"genres": ["Action", "Crime", "Drama"], "year": 1972}),
    ItemRecord("Heat (1995)", "movie", "Heat", attributes={"genres": ["Action", "Crime", "Thriller"], "year": 1995}),
    ItemRecord("Hamlet (1990)", "movie", "Hamlet", attributes={"genres": ["Drama"], "year": 1990}),
    ItemRecord("Hamlet (1996)", "movie", "Hamlet", attributes={"genres": ["Drama"], "year": 1996}),
    ItemRecord("Sense and Sensibility (1995)", "movie", "Sense and Sensibility", attributes={"genres": ["Drama", "Romance"], "year": 1995}),
    ItemRecord("Love Story (1970)", "movie", "Love Story", attributes={"genres": ["Drama", "Romance"], "year": 1970}),
    ItemRecord("No Country for Old Men (2007)", "movie", "No Country for Old Men", attributes={"genres": ["Crime", "Thriller"], "year": 2007}),
    ItemRecord("Old Men (1990)", "movie", "Old Men", attributes={"genres": ["Comedy"], "year": 1990}),
]
FACTS = SceneFacts.of(MOVIES)


def named(query: str) -> list[list[str]]:
    return [ids for ids, _ in FACTS.references(query)]


def test_titles_are_known_by_their_main_and_alternative_names_without_articles():
    assert title_keys("Seven (Se7en)") == ["seven", "se7en"]
    assert title_keys("Seventh Seal, The (Sjunde inseglet, Det)") == ["seventh seal", "sjunde inseglet det"]
    assert title_keys("The Godfather") == ["godfather"]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("a thriller like Se7en but from the 90s", [["Seven (Se7en) (1995)"]]),
        ("movies like The Godfather", [["Godfather, The (1972)"]]),
        ("something similar to sense and sensibility", [["Sense and Sensibility (1995)"]]),
        ('films such as "heat"', [["Heat (1995)"]]),
        ("像Se7en那样的电影", [["Seven (Se7en) (1995)"]]),
        ("like Heat or like Seven", [["Heat (1995)"], ["Seven (Se7en) (1995)"]]),
        ("films like No Country for Old Men", [["No Country for Old Men (2007)"]]),
    ],
)
def test_a_request_names_a_catalog_item_after_like_or_similar_to(query, expected):
    assert named(query) == expected


@pytest.mark.parametrize(
    "query",
    ["I'd like a crime thriller", "movies I like", "something with heat", "like heat in summer", "films like nothing else", "something like a love story set in Paris"],
)
def test_like_as_a_verb_or_a_lower_case_common_word_names_nothing(query):
    assert named(query) == []


def test_looking_for_named_items_stays_linear_on_adversarial_text():
    import time

    started = time.process_time()
    for text in ["x" * 1330 + "! " + "i like " * 100, "像a" * 1000, "like " * 400, "similar to the " * 130]:
        FACTS.references(text)
    assert time.process_time() - started < 0.5


def test_of_several_items_with_the_named_title_the_most_interacted_with_is_the_reference():
    popularity = {"Hamlet (1990)": 3, "Hamlet (1996)": 40}
    understood = understand(FACTS, Filters(), fallback_intent("like Hamlet"), "like Hamlet", popularity)
    assert understood.references == ["Hamlet (1996)"]
    assert understood.lexical_query == "like"


def test_stated_years_become_a_range_on_the_year_attribute_unless_the_request_sets_one():
    intent = fallback_intent("a crime film from the 90s")
    understood = understand(FACTS, Filters(), intent, intent.query, {})
    assert understood.filters.ranges == {"year": Range(min=1990, max=1999)}
    own = Filters(ranges={"year": Range(min=1970)})
    assert understand(FACTS, own, intent, intent.query, {}).filters.ranges == own.ranges


def test_the_clients_own_filters_and_shortlist_win_over_what_the_text_implies():
    intent = fallback_intent("an 80s comedy, but not a romance")
    wants_romance = Filters(attributes={"genres": ["Romance"], "year": 1995})
    understood = understand(FACTS, wants_romance, intent, intent.query, {})
    assert understood.filters.exclude_attributes == {} and understood.filters.ranges == {}
    shortlist = Filters(item_ids=["Love Story (1970)", "Heat (1995)"])
    assert understand(FACTS, shortlist, intent, intent.query, {}).filters == shortlist


def test_a_price_is_ignored_in_a_scene_whose_items_have_no_price():
    intent = fallback_intent("a film under $10")
    assert intent.constraints.price_max == 10
    assert understand(FACTS, Filters(), intent, intent.query, {}).filters.ranges == {}


def test_ruled_out_words_that_name_a_genre_exclude_it_and_others_are_ignored():
    assert rule_exclusions("a drama, no romantic comedies, nothing older than 1990") == ["romantic"]
    assert rule_exclusions("nothing but comedy please, not only action") == []
    intent = fallback_intent("a drama but not a romance, no sugar")
    understood = understand(FACTS, Filters(), intent, intent.query, {})
    assert understood.filters.exclude_attributes == {"genres": ["Romance"]}
    allow = allow_filter({r.item_id: r for r in MOVIES}, [], understood.filters)
    assert [r.item_id for r in MOVIES if allow(r.item_id) and "Drama" in r.attributes["genres"]] == [
        "Godfather, The (1972)",
        "Hamlet (1990)",
        "Hamlet (1996)",
    ]


def test_over_the_demo_a_named_film_leads_to_similar_films_of_the_stated_decade_and_never_to_itself(demo):
    answer = demo.recommend(RecommendRequest(query="a thriller like Se7en but from the 90s", scene="movie", k=10))
    ids = [i.item_id for i in answer.items]
    assert "Seven (Se7en) (1995)" not in ids
    assert all(1990 <= i.attributes["year"] <= 1999 for i in answer.items)
    assert sum("Thriller" in i.attributes["genres"] or "Crime" in i.attributes["genres"] for i in answer.items) >= 7
    assert any("people who liked Seven (Se7en) also liked this" in i.reasons for i in answer.items)


def test_over_the_demo_a_ruled_out_genre_is_never_returned(demo):
    answer = demo.recommend(RecommendRequest(query="a funny movie, not a romance", scene="movie", k=20))
    assert answer.intent.exclude == ["romance"]
    assert len(answer.items) == 20
    assert not any("Romance" in i.attributes["genres"] for i in answer.items)
    assert sum("Comedy" in i.attributes["genres"] for i in answer.items) >= 15


def test_an_item_added_a_moment_ago_can_be_named_and_is_forgotten_when_removed(writable_demo):
    from llmrec.serving.schemas import ItemIn

    request = RecommendRequest(query="something like Zorblax Returns", scene="movie", k=10)
    writable_demo.add_items([ItemIn(item_id="zorblax-returns", scene="movie", title="Zorblax Returns", attributes={"genres": ["Sci-Fi"], "year": 2001})])
    try:
        assert writable_demo.ranker.users.understand("movie", request, None).references == ["zorblax-returns"]
        answer = writable_demo.recommend(request)
        assert "zorblax-returns" not in [i.item_id for i in answer.items] and len(answer.items) == 10
    finally:
        writable_demo.remove_items(["zorblax-returns"])
    assert writable_demo.ranker.users.understand("movie", request, None).references == []


def test_each_category_value_is_written_as_the_scene_writes_an_item_that_has_only_it():
    assert category_texts("movie", {"genres": {"Horror", "Sci-Fi"}}) == {"genres=Horror": "Movie. Genres: Horror.", "genres=Sci-Fi": "Movie. Genres: Sci-Fi."}


def test_a_request_as_close_to_every_category_is_not_moved_and_a_zero_strength_moves_nothing():
    labels = np.eye(3, dtype=np.float32)
    pull = CategoryPull(("a", "b", "c"), labels)
    even = np.ones(3, dtype=np.float32) / np.sqrt(3)
    assert np.allclose(pull.pull(even, 2.0, 0.01), even)
    leaning = np.array([0.8, 0.6, 0.0], dtype=np.float32)
    assert np.allclose(pull.pull(leaning, 0.0, 0.01), leaning)
    moved = pull.pull(leaning, 2.0, 0.01)
    assert moved[0] > leaning[0] and moved[1] < leaning[1] and np.isclose(np.linalg.norm(moved), 1.0)


@pytest.mark.parametrize("query, genre", [("来点轻松的爱情喜剧电影", "Romance"), ("一部载歌载舞的歌舞片", "Musical"), ("有牛仔和枪战的西部片", "Western")])
def test_over_the_demo_a_chinese_request_pulled_toward_its_genre_finds_mostly_that_genre(demo, query, genre):
    ranker = demo.ranker
    vector = demo.encoder.encode([query])[0]
    pulled = ranker.category_pull("movie").pull(vector, ranker.config.understand.category_pull, ranker.config.understand.category_temperature)

    def hits(v: np.ndarray) -> int:
        found = ranker.retriever.search("movie", v, 10)
        return sum(genre in a.get("genres", []) for a in found.attributes[:10])

    assert hits(pulled) >= 6 > hits(vector)
    answer = demo.recommend(RecommendRequest(query=query, scene="movie", k=10))
    assert sum(genre in i.attributes["genres"] for i in answer.items) >= 6


def test_a_genre_first_seen_after_start_is_embedded_when_a_request_first_needs_it(writable_demo):
    from llmrec.serving.schemas import ItemIn

    assert "genres=Kaiju" not in writable_demo.ranker.category_pull("movie").keys
    writable_demo.add_items([ItemIn(item_id="kaiju-night", scene="movie", title="Kaiju Night", attributes={"genres": ["Kaiju"], "year": 2003})])
    try:
        pull = writable_demo.ranker.category_pull("movie")
        assert "genres=Kaiju" in pull.keys and pull.vectors.shape == (len(pull.keys), writable_demo.encoder.dim)
        kaiju = pull.vectors[pull.keys.index("genres=Kaiju")]
        assert np.isclose(kaiju @ writable_demo.encoder.encode(["Movie. Genres: Kaiju."])[0], 1.0, atol=1e-4)
    finally:
        writable_demo.remove_items(["kaiju-night"])
    assert "genres=Kaiju" not in writable_demo.ranker.category_pull("movie").keys
