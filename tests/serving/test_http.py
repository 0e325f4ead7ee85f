"""The HTTP edge without Ray: client and admin keys, body limits and parsing, and error bodies, on a
small FastAPI app with the ingress's handlers (the Serve app itself: tests/deployments/test_serve_http.py)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import pytest
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.testclient import TestClient

from llmrec.errors import AdminDisabledError, AuthError, NotFoundError, UnavailableError
from llmrec.serving.http import (
    AdminKey,
    BodyLimitMiddleware,
    ClientKeys,
    ErrorBody,
    KeyNotAllowedError,
    OverloadedError,
    RequestIdMiddleware,
    bearer_scheme,
    error_responses,
    install_error_handlers,
    parse_keys,
    read_json,
    validate_batch,
    validate_body,
)
from llmrec.serving.schemas import IntentRequest, ItemBatch, ItemIn


class QueueFull(Exception):
    """Stands in for Ray Serve's BackPressureError (this module imports no Ray)."""

    retry_after_s = 3.2


ClientKey = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme("ClientKey", "client key"))]


def make_app(key: str | None, client_keys: list[str] | None = None) -> TestClient:
    app = FastAPI()
    app.add_middleware(BodyLimitMiddleware)
    install_error_handlers(app, overloaded=(QueueFull,))
    app.add_middleware(RequestIdMiddleware, observe=lambda: None)
    app.state.max_body_bytes = 2048
    app.state.retry_after_s = 2
    admin = AdminKey(key, "LLMREC_API_KEY")
    clients = ClientKeys(client_keys or [], admin)

    @app.put("/items")
    async def put(request: Request, authorization: ClientKey = None) -> dict:
        admin.check(authorization, clients)
        return {"upserted": [i.item_id for i in validate_batch(ItemBatch, ItemIn, "items", await read_json(request)).items]}

    @app.post("/intent", responses=error_responses(401, 413, 415, 422))
    async def intent(request: Request, authorization: ClientKey = None) -> dict:
        clients.check(authorization)
        return {"query": validate_body(IntentRequest, await read_json(request)).query}

    @app.get("/scenes")
    async def scenes(authorization: ClientKey = None) -> list:
        clients.check(authorization)
        return []

    @app.get("/missing")
    async def missing() -> dict:
        raise NotFoundError("unknown item ids: ['x']")

    @app.get("/bug")
    async def bug() -> dict:
        raise ZeroDivisionError

    @app.get("/unavailable")
    async def unavailable() -> dict:
        raise UnavailableError("the ranker stage gave no answer within 1000 ms; try again")

    @app.get("/stage-full")
    async def stage_full() -> dict:
        raise OverloadedError("the ranker stage is overloaded (queue full); retry after the Retry-After seconds", retry_after_s=0.5)

    @app.get("/full")
    async def full() -> dict:
        raise QueueFull("Request dropped due to backpressure (num_queued_requests=4, max_queued_requests=4).")

    return TestClient(app, raise_server_exceptions=False)


ITEM = {"item_id": "a", "scene": "movie", "title": "A"}


def test_admin_key_is_required_and_compared():
    client = make_app("s3cret")
    assert client.put("/items", json=ITEM, headers={"Authorization": "Bearer s3cret"}).json() == {"upserted": ["a"]}
    missing = client.put("/items", json=ITEM)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = client.put("/items", json=ITEM, headers={"Authorization": "Bearer s3cre"})
    assert wrong.status_code == 401 and "s3cret" not in wrong.text


def test_admin_routes_refuse_every_call_when_no_key_is_configured():
    response = make_app(None).put("/items", json=ITEM, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403 and "set LLMREC_API_KEY" in response.json()["error"]


def test_single_item_or_batch_and_field_errors_name_the_field():
    client = make_app("k")
    headers = {"Authorization": "Bearer k"}
    assert client.put("/items", json={"items": [ITEM, {**ITEM, "item_id": "b"}]}, headers=headers).json() == {"upserted": ["a", "b"]}
    bad = client.put("/items", json={"items": [{"item_id": "a"}]}, headers=headers)
    assert bad.status_code == 422 and "items.0.scene: Field required" in bad.json()["error"]


def test_oversized_body_is_413_by_header_and_by_stream():
    client = make_app("k")
    big = {**ITEM, "title": "x" * 5000}
    assert client.put("/items", json=big).status_code == 413

    def chunks():
        yield b'{"item_id": "a", "title": "'
        yield b"x" * 5000
        yield b'"}'

    response = client.put("/items", content=chunks(), headers={"Content-Type": "application/json", "X-Request-ID": "big-1"})
    assert response.status_code == 413 and "request body over 2048 bytes" in response.json()["error"]
    assert response.json()["request_id"] == "big-1"


def test_known_errors_map_to_their_status_and_bugs_to_500_with_a_request_id():
    client = make_app("k")
    missing = client.get("/missing", headers={"X-Request-ID": "r-1"})
    assert missing.status_code == 404 and missing.json() == {"error": "unknown item ids: ['x']", "request_id": "r-1"}
    bug = client.get("/bug")
    assert bug.status_code == 500 and bug.json()["request_id"]


@pytest.mark.parametrize(("error", "status"), [(AuthError("x"), 401), (AdminDisabledError("x"), 403), (NotFoundError("x"), 404)])
def test_error_classes_carry_their_http_status(error, status):
    assert error.status == status


# ---- every error in the project's format, framework errors included ------------------------------


def is_error_body(response) -> bool:
    return response.headers["content-type"].startswith("application/json") and set(response.json()) == {"error", "request_id"}


def test_unknown_paths_and_wrong_methods_answer_in_the_error_format():
    client = make_app("k")
    missing = client.get("/v2/nothing-here", headers={"X-Request-ID": "r-404"})
    assert missing.status_code == 404 and is_error_body(missing)
    assert missing.json() == {"error": "no route GET /v2/nothing-here; the API is under /v1 (see /docs)", "request_id": "r-404"}
    wrong = client.delete("/scenes")
    assert wrong.status_code == 405 and is_error_body(wrong) and wrong.headers["allow"] == "GET"
    assert "DELETE is not allowed on /scenes; allowed: GET" in wrong.json()["error"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b'{"query": ', {"Content-Type": "application/json"}, 422, "the body is not valid JSON"),
        (b'{"query": "caf\xe9"}', {"Content-Type": "application/json"}, 422, "the body is not valid JSON"),  # not UTF-8
        (b'{"query": "\\ud800"}', {"Content-Type": "application/json"}, 422, "the body is not valid JSON"),  # a lone surrogate
        (b'{"query": NaN}', {"Content-Type": "application/json"}, 422, "NaN and Infinity are not JSON numbers"),
        (b'{"query": "x", "n": 1e999}', {"Content-Type": "application/json"}, 422, "NaN and Infinity"),
        (b"", {"Content-Type": "application/json"}, 422, "the body is empty"),
        (b"query=jazz", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
        (b'{"query": 5}', {"Content-Type": "application/json"}, 422, "body.query: Input should be a valid string"),
        (b'["jazz"]', {"Content-Type": "application/json"}, 422, "body: Input should be a valid dictionary"),
    ],
)
def test_malformed_bodies_are_4xx_in_the_error_format(content, headers, status, message):
    response = make_app("k").post("/intent", content=content, headers=headers)
    assert response.status_code == status and is_error_body(response), response.text
    assert message in response.json()["error"]


def test_bodies_are_validated_strictly_and_json_without_a_content_type_is_accepted():
    client = make_app("k")
    assert client.post("/intent", content=b'{"query": "jazz"}').json() == {"query": "jazz"}
    assert client.post("/intent", content=b'{"query": "jazz"}', headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
    headers = {"Authorization": "Bearer k"}
    coerced = client.put("/items", json={"item_id": 5, "scene": "movie", "title": "A"}, headers=headers)  # lax pydantic would take 5 as "5"
    assert coerced.status_code == 422 and "item_id: Input should be a valid string" in coerced.json()["error"]
    assert client.put("/items", json=[ITEM], headers=headers).status_code == 422


def test_length_limits_hold_on_the_raw_string_as_documented():
    client = make_app("k")
    padded = client.post("/intent", json={"query": "x" * 1990 + " " * 20})  # 2,010 characters; 1,990 once stripped
    assert padded.status_code == 422 and "body.query: String should have at most 2000 characters" in padded.json()["error"]
    assert client.post("/intent", json={"query": "  jazz  "}).json() == {"query": "jazz"}
    with pytest.raises(RequestValidationError) as caught:
        validate_batch(ItemBatch, ItemIn, "items", {"items": [{**ITEM, "text": "y" * 19_990 + " " * 20}]})
    assert [e["loc"] for e in caught.value.errors()] == [("body", "items", 0, "text")]


def test_unavailable_and_overloaded_are_503_with_retry_after():
    client = make_app("k")
    unavailable = client.get("/unavailable", headers={"X-Request-ID": "r-503"})
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "2" and is_error_body(unavailable)
    assert unavailable.json()["request_id"] == "r-503"
    full = client.get("/full")
    assert full.status_code == 503 and full.headers["retry-after"] == "4"  # the rejection's own retry_after_s, rounded up
    assert is_error_body(full) and "overloaded" in full.json()["error"] and "backpressure" in full.json()["error"]
    stage_full = client.get("/stage-full")
    assert stage_full.status_code == 503 and stage_full.headers["retry-after"] == "1" and "ranker stage is overloaded" in stage_full.json()["error"]


# ---- client keys ---------------------------------------------------------------------------------


def test_client_routes_are_open_without_client_keys():
    client = make_app("admin")
    assert client.get("/scenes").status_code == 200
    assert client.post("/intent", json={"query": "jazz"}).status_code == 200


def test_client_routes_need_one_of_the_client_keys_or_the_admin_key():
    client = make_app("admin-key", ["old-client-key", "new-client-key"])
    for key in ("old-client-key", "new-client-key", "admin-key"):  # rotation: old and new are both accepted meanwhile
        assert client.get("/scenes", headers={"Authorization": f"Bearer {key}"}).status_code == 200, key
    missing = client.get("/scenes")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer" and is_error_body(missing)
    assert "needs a client key" in missing.json()["error"]
    for header in ("Bearer old-client-ke", "Bearer old-client-key2", "Basic old-client-key", "old-client-key", "Bearer "):
        wrong = client.get("/scenes", headers={"Authorization": header})
        assert wrong.status_code == 401 and "old-client" not in wrong.text and "new-client" not in wrong.text, header


def test_the_key_is_checked_before_the_body_is_read():
    client = make_app("admin-key", ["client-key"])
    assert client.post("/intent", content=b"not json", headers={"Content-Type": "application/json"}).status_code == 401


def test_a_client_key_does_not_open_item_writes():
    client = make_app("admin-key", ["client-key"])
    forbidden = client.put("/items", json=ITEM, headers={"Authorization": "Bearer client-key"})
    assert forbidden.status_code == 403 and "item writes need the admin API key" in forbidden.json()["error"]
    assert client.put("/items", json=ITEM, headers={"Authorization": "Bearer admin-key"}).status_code == 200
    assert KeyNotAllowedError.status == 403


def test_keys_are_read_from_the_environment_and_from_a_file_that_is_re_read(tmp_path, monkeypatch):
    assert parse_keys(" a, b ,,\n# a comment, not a key\nc\n") == ["a", "b", "c"]
    keys_file = tmp_path / "client-keys"
    keys_file.write_text("file-key-1\n")
    clients = ClientKeys.load("LLMREC_CLIENT_KEYS", str(keys_file), environ={"LLMREC_CLIENT_KEYS": "env-key-1,env-key-2"})
    assert len(clients) == 3 and clients.matches("env-key-2") and clients.matches("file-key-1") and not clients.matches("file-key-2")
    keys_file.write_text("file-key-1\nfile-key-2\n")
    os.utime(keys_file, ns=(1, 1))  # a new stamp even within the file system's time resolution
    monkeypatch.setattr(ClientKeys, "RELOAD_EVERY_S", 0.0)
    assert clients.matches("file-key-2") and len(clients) == 4
    with pytest.raises(FileNotFoundError, match="client keys file"):
        ClientKeys.load("LLMREC_CLIENT_KEYS", str(tmp_path / "absent"), environ={})
    assert not ClientKeys.load("LLMREC_CLIENT_KEYS", None, environ={}).enabled


def test_start_up_line_says_whether_client_routes_are_open_and_never_shows_a_key(caplog):
    assert "OPEN" in ClientKeys([]).describe()
    line = ClientKeys(["s3cret-client-key"], AdminKey("s3cret-admin", "LLMREC_API_KEY")).describe()
    assert "1 client key(s)" in line and "s3cret" not in line
    with caplog.at_level(logging.DEBUG):
        make_app("s3cret-admin", ["s3cret-client-key"]).get("/scenes", headers={"Authorization": "Bearer s3cret-wrong"})
    assert "s3cret" not in caplog.text


# ---- the OpenAPI document ------------------------------------------------------------------------


def test_error_statuses_are_documented_with_the_error_schema():
    schema = make_app("k").get("/openapi.json").json()
    responses = schema["paths"]["/intent"]["post"]["responses"]
    assert {"401", "413", "415", "422"} <= set(responses)
    for status in ("401", "413", "415", "422"):
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, status
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == set(ErrorBody.model_fields) == {"error", "request_id"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    shed = error_responses(503)[503]
    assert shed["headers"]["Retry-After"]["required"] and set(shed["content"]) == {"application/json", "text/plain"}
