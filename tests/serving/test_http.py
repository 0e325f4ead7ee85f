"""The HTTP edge without Ray: admin key checks, body limits and error bodies on a small FastAPI app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient

from llmrec.errors import AdminDisabledError, AuthError, NotFoundError
from llmrec.serving.http import (
    AdminKey,
    BodyLimitMiddleware,
    RequestIdMiddleware,
    install_error_handlers,
)
from llmrec.serving.schemas import ItemBatch


def make_app(key: str | None) -> TestClient:
    app = FastAPI()
    app.add_middleware(BodyLimitMiddleware)
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware, observe=lambda: None)
    app.state.max_body_bytes = 2048
    admin = AdminKey(key, "LLMREC_API_KEY")

    @app.put("/items")
    async def put(body: dict, authorization: str | None = Header(None)) -> dict:
        admin.check(authorization)
        return {"upserted": [i.item_id for i in ItemBatch.from_body(body).items]}

    @app.get("/missing")
    async def missing() -> dict:
        raise NotFoundError("unknown item ids: ['x']")

    @app.get("/bug")
    async def bug() -> dict:
        raise ZeroDivisionError

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

    response = client.put("/items", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "request body over 2048 bytes" in response.json()["error"]


def test_known_errors_map_to_their_status_and_bugs_to_500_with_a_request_id():
    client = make_app("k")
    missing = client.get("/missing", headers={"X-Request-ID": "r-1"})
    assert missing.status_code == 404 and missing.json() == {"error": "unknown item ids: ['x']", "request_id": "r-1"}
    bug = client.get("/bug")
    assert bug.status_code == 500 and bug.json()["request_id"]


@pytest.mark.parametrize(("error", "status"), [(AuthError("x"), 401), (AdminDisabledError("x"), 403), (NotFoundError("x"), 404)])
def test_error_classes_carry_their_http_status(error, status):
    assert error.status == status
