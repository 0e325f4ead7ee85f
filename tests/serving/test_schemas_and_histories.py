"""The request contract (validation and its messages), attribute filters and user histories."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from llmrec.data.items import compile_filters
from llmrec.errors import describe_validation_error
from llmrec.serving.schemas import EventIn, Filters, ItemIn, Range, RecommendRequest
from llmrec.serving.users import Histories, HistoryEntry

# ---- RecommendRequest ------------------------------------------------------------------------


def test_empty_request_is_rejected_naming_what_to_send():
    with pytest.raises(ValidationError) as caught:
        RecommendRequest()
    message = describe_validation_error(caught.value)
    assert message.startswith("request: ")
    for field in ("user_id", "query", "history", "profile"):
        assert field in message


@pytest.mark.parametrize("enough", [{"user_id": "u1"}, {"query": "space opera"}, {"history": ["m1"]}, {"profile": {"age": 30}}])
def test_any_one_of_user_query_history_profile_is_enough(enough):
    assert RecommendRequest(**enough).k is None


def test_k_zero_is_rejected_with_a_field_message():
    with pytest.raises(ValidationError) as caught:
        RecommendRequest(query="x", k=0)
    assert describe_validation_error(caught.value) == "k: Input should be greater than or equal to 1"


def test_blank_query_becomes_none_and_text_is_stripped():
    request = RecommendRequest(user_id="u1", query="   ")
    assert request.query is None
    assert RecommendRequest(query="  space opera \n").query == "space opera"


def test_blank_query_alone_is_an_empty_request():
    with pytest.raises(ValidationError, match="empty request"):
        RecommendRequest(query="  ")


def test_extra_fields_are_rejected():
    with pytest.raises(ValidationError) as caught:
        RecommendRequest(query="x", top_k=5)
    assert describe_validation_error(caught.value) == "top_k: Extra inputs are not permitted"
    with pytest.raises(ValidationError):
        RecommendRequest(query="x", filters={"exclude": ["a"]})


def test_range_with_min_above_max_is_rejected():
    with pytest.raises(ValidationError, match="min 2000.0 is above max 1990.0"):
        Range(min=2000, max=1990)
    assert Range(min=1990, max=1990).max == 1990
    assert Range(min=5).max is None


def test_nested_range_error_names_its_path():
    with pytest.raises(ValidationError) as caught:
        RecommendRequest(query="x", filters={"ranges": {"year": {"min": 2000, "max": 1990}}})
    assert describe_validation_error(caught.value).startswith("filters.ranges.year: ")


def test_several_errors_are_joined_one_per_field():
    with pytest.raises(ValidationError) as caught:
        RecommendRequest(query="x", k=0, history="not-a-list")
    parts = describe_validation_error(caught.value).split("; ")
    assert [p.split(":")[0] for p in parts] == ["history", "k"]


def test_describe_validation_error_passes_other_errors_through():
    assert describe_validation_error(ValueError("plain")) == "plain"


def test_rating_event_without_value_is_rejected():
    with pytest.raises(ValidationError, match="rating event needs a value"):
        EventIn(user_id="u1", item_id="m1", kind="rating")
    assert EventIn(user_id="u1", item_id="m1", kind="rating", value=4).value == 4.0
    assert EventIn(user_id="u1", item_id="m1").kind == "click"


def test_event_kind_and_timestamp_are_checked():
    with pytest.raises(ValidationError):
        EventIn(user_id="u1", item_id="m1", kind="share")
    with pytest.raises(ValidationError):
        EventIn(user_id="u1", item_id="m1", timestamp=-1)


def test_item_needs_id_scene_and_a_title_or_text():
    with pytest.raises(ValidationError) as caught:
        ItemIn(item_id="", scene="movie", title="  ")
    assert {e["loc"][0] for e in caught.value.errors()} == {"item_id"}
    with pytest.raises(ValidationError, match="send a title, or a text"):
        ItemIn(item_id="m1", scene="movie", title="  ")


def test_item_sent_with_only_text_takes_its_first_sentence_as_title_and_awaits_a_profile():
    item = ItemIn(item_id="g1", scene="grocery", text="Yogi green tea, 16 bags. Great taste and a lovely smell.")
    assert item.title == "Yogi green tea, 16 bags."
    assert item.attributes["title_source"] == "text"
    for reserved in ("profile", "title_source"):
        with pytest.raises(ValidationError, match="written by llmrec"):
            ItemIn(item_id="g2", scene="grocery", title="Tea", attributes={reserved: "text"})


# ---- compiled filters ----------------------------------------------------------------------------

MOVIE = {"year": 1995, "genres": ["Crime", "Thriller"], "director": "Michael Mann", "rating": 8.3}


def matches(**filters) -> bool:
    compiled = compile_filters(Filters(**filters))
    return compiled is None or compiled(MOVIE)


def test_no_constraints_match_everything():
    assert matches()


def test_attribute_equality_is_case_insensitive():
    assert matches(attributes={"director": "michael mann"})
    assert not matches(attributes={"director": "Ridley Scott"})
    assert matches(attributes={"year": 1995})
    assert not matches(attributes={"year": 1996})


def test_list_attributes_match_when_they_share_a_value_ignoring_case():
    assert matches(attributes={"genres": "thriller"})
    assert matches(attributes={"genres": ["Comedy", "CRIME"]})
    assert not matches(attributes={"genres": ["Comedy", "Drama"]})
    assert matches(attributes={"director": ["Ridley Scott", "Michael Mann"]})


def test_missing_attribute_fails_an_attribute_constraint():
    assert not matches(attributes={"language": "English"})


def test_every_constraint_must_hold():
    assert matches(attributes={"genres": "crime", "year": 1995})
    assert not matches(attributes={"genres": "crime", "year": 1994})


def test_ranges_are_inclusive_and_open_ended():
    assert matches(ranges={"year": {"min": 1995, "max": 1995}})
    assert matches(ranges={"year": {"min": 1990}})
    assert matches(ranges={"rating": {"max": 8.3}})
    assert not matches(ranges={"year": {"max": 1994}})
    assert not matches(ranges={"rating": {"min": 8.31}})


def test_missing_or_non_numeric_attribute_fails_a_range():
    assert not matches(ranges={"runtime": {"min": 0}})
    assert not matches(ranges={"director": {"min": 0}})


def test_numerically_equal_int_and_float_attributes_match():
    assert compile_filters(Filters(attributes={"price": 10}))({"price": 10.0})


# ---- Histories -------------------------------------------------------------------------------


def histories() -> Histories:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u1", "u2"],
            "item_id": ["late", "x", "early", "middle", "y"],
            "rating": [5.0, 3.0, 4.0, 2.0, 1.0],
            "timestamp": [300, 50, 100, 200, 10],
        }
    )
    return Histories(frame, recent_limit=3)


def test_history_comes_back_in_time_order():
    entries = histories().get("u1")
    assert [(e.item_id, e.rating, e.timestamp) for e in entries] == [("early", 4.0, 100), ("middle", 2.0, 200), ("late", 5.0, 300)]
    assert [e.item_id for e in histories().get("u2")] == ["y", "x"]


def test_add_appends_after_the_catalog_history():
    history = histories()
    history.add("u1", HistoryEntry("new", None, 400, kind="click"))
    entries = history.get("u1")
    assert [e.item_id for e in entries] == ["early", "middle", "late", "new"]
    assert entries[-1].kind == "click" and entries[-1].rating is None
    assert [e.item_id for e in history.get("u2")] == ["y", "x"]


def test_only_a_users_newest_recorded_events_are_kept_after_the_catalog_history():
    history = histories()
    for n in range(10):
        history.add("u1", HistoryEntry(f"new{n}", None, 400 + n, kind="click"))
    assert [e.item_id for e in history.get("u1")] == ["early", "middle", "late", "new7", "new8", "new9"]


def test_unknown_user_has_an_empty_history():
    assert histories().get("nobody") == []
    assert Histories(pd.DataFrame(columns=["user_id", "item_id", "rating", "timestamp"]), recent_limit=3).get("u1") == []


def test_contains_knows_catalog_users_and_users_seen_only_in_events():
    history = histories()
    assert "u1" in history and "u2" in history
    assert "u3" not in history
    history.add("u3", HistoryEntry("m1", 5.0, 1))
    assert "u3" in history
    assert [e.item_id for e in history.get("u3")] == ["m1"]
    # get() on an unknown user must not register them as known.
    history.get("ghost")
    assert "ghost" not in history
