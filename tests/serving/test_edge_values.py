"""Edge values that used to reach the store or the filters unchecked: huge timestamps, control
characters in ids, NaN and Infinity. Each is a 422 with a message saying what to send instead."""

from __future__ import annotations

import json
import math

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from llmrec.data.items import compile_filters
from llmrec.data.store import EventRecord, SQLiteStore
from llmrec.errors import describe_validation_error
from llmrec.serving.http import install_error_handlers
from llmrec.serving.schemas import EventBatch, EventIn, Filters, ItemBatch, ItemIn, RecommendRequest


def message_of(model, **fields) -> str:
    with pytest.raises(ValidationError) as caught:
        model(**fields)
    return describe_validation_error(caught.value)


# ---- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [1e27, 10**27, 2**63, 253_402_300_800, 1_700_000_000_000, -1])
def test_event_timestamps_outside_0_to_the_year_9999_are_rejected(timestamp):
    message = message_of(EventIn, user_id="u1", item_id="m1", timestamp=timestamp)
    assert message.startswith("timestamp: ") and "253402300799" in message and "Unix seconds" in message


def test_every_timestamp_the_schema_accepts_fits_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite")
    accepted = []
    try:
        for timestamp in (0, 1_700_000_000, 253_402_300_799, 253_402_300_800, 10**27, 2**63, 1e27):
            try:
                event = EventIn(user_id="u1", item_id="m1", timestamp=timestamp)
            except ValidationError:
                continue
            store.add_events([EventRecord(event.user_id, event.item_id, event.kind, event.value, event.timestamp)])  # 10**27 overflowed SQLite here
            accepted.append(timestamp)
        assert accepted == [0, 1_700_000_000, 253_402_300_799]
        assert [e.timestamp for e in store.events()] == accepted
    finally:
        store.close()


# ---- control characters in ids, NUL in stored text --------------------------------------------


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "\x1b[31m", "a\ud800b"])
def test_ids_with_control_characters_or_lone_surrogates_are_rejected(bad):  # pydantic itself refuses lone surrogates in strings
    for model, fields, where in [
        (EventIn, {"user_id": bad, "item_id": "m1"}, "user_id"),
        (EventIn, {"user_id": "u1", "item_id": bad}, "item_id"),
        (ItemIn, {"item_id": bad, "scene": "movie", "title": "T"}, "item_id"),
        (RecommendRequest, {"user_id": bad}, "user_id"),
        (RecommendRequest, {"user_id": "u1", "context": bad}, "context"),
        (RecommendRequest, {"query": "x", "history": [bad]}, "history.0"),
        (RecommendRequest, {"query": "x", "filters": {"exclude_item_ids": [bad]}}, "filters.exclude_item_ids.0"),
    ]:
        message = message_of(model, **fields)
        expected = "unable to parse raw data as a unicode string" if "\ud800" in bad else "ids cannot contain control characters (U+00"
        assert message.startswith(f"{where}: ") and expected in message, message


def test_item_text_and_attributes_that_no_database_can_store_are_rejected():
    assert "NUL" in message_of(ItemIn, item_id="a", scene="movie", title="Bad\x00Title")
    assert "NUL" in message_of(ItemIn, item_id="a", scene="movie", title="T", text="body\x00")
    assert "surrogate" in message_of(ItemIn, item_id="a", scene="movie", title="T", attributes={"tag": "\udc80"})
    assert "finite" in message_of(ItemIn, item_id="a", scene="movie", title="T", attributes={"rating": float("nan")})
    assert "finite" in message_of(ItemIn, item_id="a", scene="movie", title="T", attributes={"scores": {"imdb": [1.0, float("-inf")]}})
    assert "nest" in message_of(ItemIn, item_id="a", scene="movie", title="T", attributes={"a": [[[[[[[1]]]]]]]})
    ok = ItemIn(item_id="a b-c_d.é", scene="movie", title="Tab\there", text="line one\nline two", attributes={"genres": ["Drama"], "meta": {"year": 1999}})
    assert ok.text == "line one\nline two" and ok.attributes["meta"] == {"year": 1999}


# ---- NaN and Infinity ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_event_values_must_be_finite(value):
    message = message_of(EventIn, user_id="u1", item_id="m1", kind="rating", value=value)
    assert message.startswith("value: ") and "finite" in message


@pytest.mark.parametrize("bound", [{"min": math.nan}, {"max": math.nan}, {"min": math.inf}, {"min": 1990, "max": math.nan}])
def test_non_finite_range_bounds_are_rejected_instead_of_turning_the_filter_off(bound):
    message = message_of(Filters, ranges={"year": bound})
    assert message.startswith("ranges.year.") and "finite" in message


def test_finite_range_bounds_still_filter():
    assert not compile_filters(Filters(ranges={"year": {"max": 1990}}))({"year": 1995})
    assert compile_filters(Filters(ranges={"year": {"min": 1990, "max": 2000}}))({"year": 1995})


# ---- over HTTP: a 422 that names the field, never a 500 -----------------------------------------


def http_app() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/recommend")
    async def recommend(body: RecommendRequest) -> dict:
        return {"ok": True}

    @app.post("/v1/events")
    async def events(body: dict) -> dict:
        return {"stored": len(EventBatch.from_body(body).events)}

    @app.put("/v1/items")
    async def items(body: dict) -> dict:
        return {"upserted": [i.item_id for i in ItemBatch.from_body(body).items]}

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("route", "body", "expected"),
    [
        ("/v1/events", {"user_id": "u1", "item_id": "m1", "timestamp": 10**27}, "body: timestamp: "),
        ("/v1/events", {"user_id": "u1", "item_id": "m1", "timestamp": 1e27}, "body: timestamp: Unix seconds"),
        ("/v1/events", {"user_id": "u\x001", "item_id": "m1"}, "body: user_id: "),
        ("/v1/events", {"events": [{"user_id": "u1", "item_id": "m1", "kind": "rating", "value": math.nan}]}, "body: events.0.value: "),
        ("/v1/items", {"item_id": "a\x00", "scene": "movie", "title": "T"}, "body: item_id: "),
        ("/v1/recommend", {"user_id": "u1", "context": "x" * 1000}, "body.context: "),
        ("/v1/recommend", {"query": "x", "filters": {"ranges": {"year": {"max": math.nan}}}}, "body.filters.ranges.year.max: "),
        ("/v1/recommend", {"query": "x", "filters": {"attributes": {"genres": [str(i) for i in range(20_000)]}}}, "body.filters.attributes: "),
    ],
)
def test_edge_values_over_http_are_422_naming_the_field(route, body, expected):
    client = http_app()
    call = client.put if route == "/v1/items" else client.post
    # json.dumps writes NaN as JSON's NaN, which the server's parser (json.loads) accepts
    response = call(route, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert expected in response.json()["error"], response.json()
