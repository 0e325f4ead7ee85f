"""The Serve app over real HTTP on a local Ray: recommendations, writes, bad input, restarts."""

from __future__ import annotations

import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import TEST_API_KEY

ADMIN = {"Authorization": f"Bearer {TEST_API_KEY}"}
KIDS = {"Animation", "Children's"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_config(demo_catalog, tmp_path_factory):
    from deployments.local import LOCAL_SERVE_CONFIG, serve_config

    store = tmp_path_factory.mktemp("serve-state") / "demo.sqlite"
    return serve_config(LOCAL_SERVE_CONFIG, _free_port(), "local", [f"store.url=sqlite:///{store}"])


@pytest.fixture(scope="module")
def server(local_ray, app_config):
    """The app deployed from the local Serve config (index cache shared with the other tests)."""
    from ray import serve

    from deployments.local import start

    start(app_config, timeout_s=900)
    port = app_config["http_options"]["port"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield client
    serve.shutdown()


def recommend(server: httpx.Client, **body) -> dict:
    response = server.post("/v1/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_readiness_and_openapi_docs(server):
    assert server.get("/healthz").json() == {"status": "ok"}
    assert server.get("/readyz").json() == {"ready": True, "waiting_for": []}
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/v1/recommend", "/v1/intent", "/v1/items", "/v1/items/{item_id}", "/v1/events", "/v1/scenes"} <= set(paths)
    assert server.get("/docs").status_code == 200


def test_recommend_by_query_routes_and_explains(server):
    answer = recommend(server, query="funny animated movie for kids", k=10)
    assert (answer["scene"], answer["scene_source"]) == ("movie", "embedding")
    assert sum(bool(KIDS & set(i["attributes"]["genres"])) for i in answer["items"]) >= 7
    assert answer["intent"]["source"] == "fallback" and answer["degraded"] == []
    assert {"prepare", "intent", "encode", "route", "retrieve", "rank", "total"} <= set(answer["timings_ms"])
    assert answer["request_id"]


def test_recommend_by_user_and_by_history(server):
    by_user = recommend(server, user_id="1", k=10)
    assert by_user["user_known"] and by_user["scene_source"] == "history"
    assert any("people who liked" in " ".join(i["reasons"]) for i in by_user["items"])
    history = ["Toy Story (1995)", "Aladdin (1992)", "Lion King, The (1994)"]
    by_history = recommend(server, history=history, k=10)
    assert not {i["item_id"] for i in by_history["items"]} & set(history)
    assert sum(bool(KIDS & set(i["attributes"]["genres"])) for i in by_history["items"]) >= 6


def test_client_request_id_is_echoed(server):
    response = server.post("/v1/recommend", json={"query": "jazz"}, headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123" and response.json()["request_id"] == "trace-123"


def test_added_item_is_recommended_at_once_and_removed_item_never(server):
    item_id = f"e2e-penguins-{uuid.uuid4().hex[:8]}"
    item = {"item_id": item_id, "scene": "movie", "title": "Galactic Penguins", "text": "An animated comedy about penguins lost in outer space.", "attributes": {"genres": ["Animation"], "year": 2026}}
    assert server.put("/v1/items", json=item, headers=ADMIN).json() == {"upserted": [item_id]}
    top = recommend(server, scene="movie", query="animated penguins in outer space", k=3)["items"][0]
    assert top["item_id"] == item_id and any(r.startswith("new in") for r in top["reasons"])
    assert server.delete(f"/v1/items/{item_id}", headers=ADMIN).json() == {"deleted": [item_id]}
    assert item_id not in [i["item_id"] for i in recommend(server, scene="movie", query="animated penguins in outer space", k=20)["items"]]


def test_events_change_the_users_next_answer(server):
    user = f"e2e-user-{uuid.uuid4().hex[:8]}"
    assert server.post("/v1/recommend", json={"user_id": user}).status_code == 404
    horror = ["Shining, The (1980)", "Exorcist, The (1973)", "Halloween (1978)", "Alien (1979)"]
    stored = server.post("/v1/events", json={"events": [{"user_id": user, "item_id": i, "kind": "like"} for i in horror]})
    assert stored.json() == {"stored": 4}
    answer = recommend(server, user_id=user, k=10)
    assert answer["user_known"] and not {i["item_id"] for i in answer["items"]} & set(horror)
    assert sum("Horror" in i["attributes"]["genres"] for i in answer["items"]) >= 4


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "message"),
    [
        ("post", "/v1/recommend", {"content": b'{"query": ', "headers": {"Content-Type": "application/json"}}, 422, "not valid JSON"),
        ("post", "/v1/recommend", {"json": {"query": "jazz", "k": "many"}}, 422, "body.k"),
        ("post", "/v1/recommend", {"json": {"query": "jazz", "history": "Jaws"}}, 422, "body.history"),
        ("post", "/v1/recommend", {"json": {}}, 422, "empty request"),
        ("post", "/v1/recommend", {"json": {"query": "a novel", "scene": "books"}}, 404, "unknown scene 'books'"),
        ("post", "/v1/recommend", {"json": {"query": "jazz", "k": 100000}}, 400, "above the maximum"),
        ("post", "/v1/recommend", {"json": {"query": "x" * 1_200_000}}, 413, "request body over"),
        ("put", "/v1/items", {"json": {"item_id": "a", "scene": "movie", "title": "A"}}, 401, "Authorization: Bearer"),
        ("put", "/v1/items", {"json": {"item_id": "a", "scene": "movie", "title": "A"}, "headers": {"Authorization": "Bearer wrong"}}, 401, "API key is wrong"),
        ("put", "/v1/items", {"json": {"item_id": "a", "scene": "books", "title": "A"}, "headers": ADMIN}, 404, "unknown scene"),
        ("put", "/v1/items", {"json": {"items": [{"item_id": "a"}]}, "headers": ADMIN}, 422, "items.0.scene"),
        ("delete", "/v1/items/no-such-item", {"headers": ADMIN}, 404, "unknown item ids"),
        ("delete", "/v1/items/no-such-item", {}, 401, "Authorization"),
        ("post", "/v1/events", {"json": {"user_id": "1", "item_id": "No Such Movie (1901)"}}, 404, "unknown item ids"),
        ("post", "/v1/events", {"json": {"user_id": "1", "item_id": "Jaws (1975)", "kind": "rating"}}, 422, "needs a value"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_what_to_fix(server, method, path, kwargs, status, message):
    response = getattr(server, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_concurrent_writes_and_reads_lose_nothing(server, app_config):
    from llmrec.data.store import Store

    tag = uuid.uuid4().hex[:8]
    items = [{"item_id": f"e2e-{tag}-{n}", "scene": "grocery", "title": f"Crunchy snack number {n} {tag}", "text": "A crunchy snack."} for n in range(12)]
    user = f"e2e-busy-{tag}"

    def call(n: int) -> int:
        kind, index = n % 3, n // 3
        if kind == 0:
            return server.put("/v1/items", json=items[index], headers=ADMIN).status_code
        if kind == 1:
            return server.post("/v1/events", json={"user_id": user, "item_id": "Jaws (1975)", "kind": "click"}).status_code
        return server.post("/v1/recommend", json={"query": "crunchy snack", "scene": "grocery", "k": 5}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(36)))
    assert statuses == [200] * 36
    found = recommend(server, scene="grocery", query=f"Crunchy snack number {tag}", k=50)
    assert {i["item_id"] for i in items} <= {i["item_id"] for i in found["items"]}
    store_url = next(o for o in app_config["applications"][0]["args"]["overrides"] if o.startswith("store.url="))
    events = Store.open(store_url.removeprefix("store.url=")).events()
    assert sum(e.user_id == user for e in events) == 12


def test_acknowledged_writes_survive_an_app_restart(server, app_config):
    from ray import serve

    from deployments.local import start

    item_id = f"e2e-durable-{uuid.uuid4().hex[:8]}"
    user = f"e2e-durable-user-{uuid.uuid4().hex[:8]}"
    item = {"item_id": item_id, "scene": "music", "title": "Durable Disco", "text": "A disco anthem about write-ahead logs."}
    assert server.put("/v1/items", json=item, headers=ADMIN).status_code == 200
    assert server.post("/v1/events", json={"user_id": user, "item_id": "Jaws (1975)", "kind": "rating", "value": 5}).status_code == 200
    serve.shutdown()
    start(app_config, timeout_s=900)
    assert recommend(server, scene="music", query="a disco anthem about write-ahead logs", k=1)["items"][0]["item_id"] == item_id
    assert recommend(server, user_id=user, k=5)["user_known"]
