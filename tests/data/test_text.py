"""Item and user text: what the encoder sees, in what order, and how long."""

from __future__ import annotations

from llmrec.data.text import MAX_ITEM_CHARS, MAX_USER_CHARS, render_item, render_user


def test_movie_attributes_follow_the_scene_order_then_the_rest_alphabetically():
    text = render_item(
        "movie",
        "Heat",
        {"runtime": 170, "genres": ["Crime", "Thriller"], "country": "USA", "year": 1995, "director": "Michael Mann"},
    )
    assert text == (
        "Movie: Heat. Year: 1995. Genres: Crime, Thriller. Director: Michael Mann. Country: USA. Runtime: 170."
    )
    assert text.index("Year:") < text.index("Genres:")


def test_music_puts_the_artist_before_the_year():
    text = render_item("music", "Hey Jude", {"year": 1968, "artist": "The Beatles"})
    assert text == "Music: Hey Jude. Artist: The Beatles. Year: 1968."


def test_unknown_scene_orders_attributes_alphabetically():
    text = render_item("podcast", "Serial", {"host": "Sarah Koenig", "episodes": 12})
    assert text == "Podcast: Serial. Episodes: 12. Host: Sarah Koenig."


def test_hidden_bookkeeping_attributes_are_not_rendered():
    attributes = {"source": "amazon", "title_source": "meta", "entity_id": "m.0abc", "no_metadata": True, "brand": "Acme"}
    text = render_item("grocery", "Oats", attributes)
    assert text == "Grocery: Oats. Brand: Acme."
    for hidden in ("amazon", "m.0abc", "Source", "Title source", "Entity id", "No metadata"):
        assert hidden not in text


def test_list_values_are_joined_and_whole_floats_lose_their_point():
    text = render_item("books", "Dune", {"authors": ["Frank Herbert", "Brian Herbert"], "year": 1965.0, "rating": 4.5})
    assert "Authors: Frank Herbert, Brian Herbert." in text
    assert "Year: 1965." in text and "1965.0" not in text
    assert "Rating: 4.5." in text


def test_underscored_keys_become_readable_labels():
    assert "Peak position: 1." in render_item("music", "Song", {"peak_position": 1})


def test_facts_follow_the_attributes_and_the_description_comes_last():
    text = render_item(
        "movie",
        "Return of the Jedi",
        {"year": 1983},
        text="  Luke confronts Vader.  ",
        facts=[("prequel", "The Empire Strikes Back"), ("directed_by", "Richard Marquand")],
    )
    assert text == (
        "Movie: Return of the Jedi. Year: 1983. Prequel: The Empire Strikes Back. "
        "Directed by: Richard Marquand. Luke confronts Vader."
    )


def test_item_text_is_capped():
    text = render_item("news", "Headline", {"category": "world"}, text="word " * 1000)
    assert len(text) == MAX_ITEM_CHARS
    assert text.startswith("News: Headline. Category: world. word")


def test_user_text_puts_the_query_first_then_liked_titles_then_profile():
    text = render_user(
        query="  something funny for tonight ",
        liked_titles=["Toy Story", "Groundhog Day"],
        profile={"age": 25, "favourite_genre": "comedy"},
    )
    assert text == "something funny for tonight Liked: Toy Story; Groundhog Day. About me: age 25, favourite genre comedy."


def test_user_text_skips_missing_parts():
    assert render_user(liked_titles=["Heat"]) == "Liked: Heat."
    assert render_user(profile={"occupation": "writer"}) == "About me: occupation writer."
    assert render_user() == ""


def test_user_text_is_capped():
    assert len(render_user(query="q" * 5000)) == MAX_USER_CHARS
