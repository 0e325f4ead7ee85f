"""Ingress deployment: the HTTP API v1 (FastAPI), running llmrec's Pipeline over deployment handles.

No `from __future__ import annotations` here: FastAPI reads the route annotations as Serve rebinds them.
"""


import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

import llmrec
from deployments.metrics import ServiceMetrics
from llmrec.config import ConfigError, PipelineConfig
from llmrec.data.items import item_text
from llmrec.errors import UnavailableError
from llmrec.intent.schema import Intent
from llmrec.serving.budget import call_within
from llmrec.serving.http import (
    AdminKey,
    BodyLimitMiddleware,
    ClientKeys,
    OverloadedError,
    RequestIdMiddleware,
    bearer_scheme,
    document_body_models,
    error_responses,
    install_error_handlers,
    json_body,
    read_json,
    request_id_of,
    schema_ref,
    validate_batch,
    validate_body,
)
from llmrec.serving.pipeline import Pipeline
from llmrec.serving.schemas import (
    Deleted,
    EventBatch,
    EventIn,
    Health,
    IntentRequest,
    ItemBatch,
    ItemIn,
    Readiness,
    RecommendRequest,
    RecommendResponse,
    Stored,
    Upserted,
)

log = logging.getLogger("ray.serve")
T = TypeVar("T")

api = FastAPI(
    title="llmrec",
    version=llmrec.__version__,
    description=(
        "LLM-powered, multi-scene recommendations with cold start.\n\n"
        "**Keys.** Send `Authorization: Bearer KEY`. Client routes (recommend, intent, events, scenes) need a client key when the server "
        "has client keys configured (otherwise they are open); item writes need the admin key, which also opens the client routes. "
        "`/healthz` and `/readyz` are always open.\n\n"
        "**Errors** are JSON `{\"error\": \"what to fix\", \"request_id\": \"...\"}`, unknown routes and methods included. A 503 carries "
        "`Retry-After`; when Serve itself sheds load (the Ingress queue is full) its 503 body is plain text."
    ),
)
api.add_middleware(BodyLimitMiddleware)
OVERLOADED = (BackPressureError, DeploymentUnavailableError)
install_error_handlers(api, overloaded=OVERLOADED)
api.add_middleware(RequestIdMiddleware, observe=lambda: getattr(api.state, "observe_request", None))

ClientKey = Annotated[
    HTTPAuthorizationCredentials | None,
    Security(bearer_scheme("ClientKey", "A client key (or the admin key); needed when the server has client keys configured.")),
]
AdminOnly = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme("AdminKey", "The admin API key (LLMREC_API_KEY)."))]

# Request bodies are parsed by the routes (JSON only, strict types, one object or a batch), so their
# schemas are added to the OpenAPI document rather than taken from the signatures.
document_body_models(api, [RecommendRequest, IntentRequest, ItemIn, ItemBatch, EventIn, EventBatch])


BODY_ERRORS = (413, 415, 422)  # every route with a body; the rest per route


def replica_died(error: BaseException) -> bool:
    """A stage replica (or its node) died under the call: the pipeline sends it once more, to another replica."""
    return isinstance(error, (RayActorError, ActorUnavailableError))


@serve.deployment(name="Ingress", max_ongoing_requests=200, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(api)
class Ingress:
    def __init__(
        self, config: PipelineConfig, intent: DeploymentHandle, encoder: DeploymentHandle, ranker: DeploymentHandle, profiler: DeploymentHandle
    ) -> None:
        server = config.server
        self.intent, self.encoder, self.ranker, self.profiler = intent, encoder, ranker, profiler
        self.metrics = ServiceMetrics()
        self.pipeline = Pipeline(intent, encoder, ranker, config, observe=self.metrics.stage, retryable=replica_died)
        self.admin = AdminKey.from_env(server.api_key_env)
        self.clients = ClientKeys.load(server.client_keys_env, server.client_keys_file, self.admin)
        if server.require_client_keys and not self.clients.enabled:
            raise ConfigError(f"server.require_client_keys is set but no client keys are configured: set {server.client_keys_env} (comma-separated) or server.client_keys_file")
        if self.clients.enabled:
            log.info(self.clients.describe())
        else:
            log.warning(self.clients.describe())
        if not self.admin.enabled:
            log.info("admin routes are disabled: %s is not set", server.api_key_env)
        self.call_timeout_s = server.call_timeout_s
        api.state.max_body_bytes = server.max_body_bytes
        api.state.retry_after_s = server.retry_after_s
        api.state.observe_request = self.metrics.request

    async def _call(self, stage: str, call: Callable[[], Awaitable[T]], write: bool = False, idempotent: bool = True) -> T:
        """One of the ingress's own stage calls (the pipeline's have their budgets and turn a refusal into a
        fallback or a 503 themselves), within call_timeout_s; sent once more when its replica died under it,
        if it is `idempotent` (reads, item upserts, keyed events); a full queue is a 503 with Retry-After here,
        in the API's error format (Serve's own handler for BackPressureError would answer plain text)."""
        try:
            return await call_within(f"{stage} call", call, self.call_timeout_s, replica_died if idempotent else None)
        except TimeoutError:
            outcome = " (the write may still be applied: retrying it is safe, with an event_id for events)" if write else ""
            raise UnavailableError(f"the {stage} stage gave no answer within {self.call_timeout_s:g} s{outcome}; try again") from None
        except OVERLOADED as error:
            raise OverloadedError(f"the {stage} stage is overloaded ({error}); retry after the Retry-After seconds", getattr(error, "retry_after_s", None)) from None

    @api.post(
        "/v1/recommend",
        response_model=RecommendResponse,
        responses=error_responses(400, 401, 404, *BODY_ERRORS, 503),
        openapi_extra=json_body(schema_ref(RecommendRequest), "Who is asking, for what, where and how many."),
    )
    async def recommend(self, request: Request, key: ClientKey = None) -> Response:
        self.clients.check(key)
        body = validate_body(RecommendRequest, await read_json(request))
        # A user's stored history is named in reasons only to the admin: client keys belong to applications,
        # and any of them may ask about any user id.
        response = await self.pipeline.recommend(body, request_id_of(request), reveal_history=self.admin.presented_by(key))
        self.metrics.answered(response)
        return Response(response.model_dump_json(), media_type="application/json")  # already valid: no second validation

    @api.post(
        "/v1/intent",
        response_model=Intent,
        responses=error_responses(401, *BODY_ERRORS, 503),
        openapi_extra=json_body(schema_ref(IntentRequest), "The free text to parse."),
    )
    async def intent(self, request: Request, key: ClientKey = None) -> Intent:
        self.clients.check(key)
        body = validate_body(IntentRequest, await read_json(request))
        return await self.pipeline.parse_intent(body.query)

    @api.put(
        "/v1/items",
        summary="Add or replace items (admin): one item object, or {\"items\": [...]}",
        response_model=Upserted,
        responses=error_responses(400, 401, 403, 404, *BODY_ERRORS, 503),
        openapi_extra=json_body({"anyOf": [schema_ref(ItemIn), schema_ref(ItemBatch)]}, "One item, or `{\"items\": [...]}` (up to 1,000)."),
    )
    async def put_items(self, request: Request, key: AdminOnly = None) -> Upserted:
        self.admin.check(key, self.clients)
        batch = validate_batch(ItemBatch, ItemIn, "items", await read_json(request))
        await self._call("ranker", lambda: self.ranker.check_scenes.remote(sorted({i.scene for i in batch.items})))
        vectors = await self._call("encoder", lambda: self.encoder.encode.remote([item_text(i) for i in batch.items]))
        ids = await self._call("ranker", lambda: self.ranker.add_items.remote(batch.items, vectors), write=True)
        return Upserted(upserted=ids)

    @api.delete("/v1/items/{item_id}", summary="Remove an item (admin)", response_model=Deleted, responses=error_responses(401, 403, 404, 422, 503))
    async def delete_item(self, item_id: Annotated[str, Path(min_length=1, max_length=300)], key: AdminOnly = None) -> Deleted:
        self.admin.check(key, self.clients)
        # Not sent twice: a delete that landed before its replica died would then answer 404.
        return Deleted(deleted=await self._call("ranker", lambda: self.ranker.remove_items.remote([item_id]), write=True, idempotent=False))

    @api.post(
        "/v1/events",
        summary="Record feedback: one event object, or {\"events\": [...]}",
        response_model=Stored,
        responses=error_responses(400, 401, 404, *BODY_ERRORS, 503),
        openapi_extra=json_body({"anyOf": [schema_ref(EventIn), schema_ref(EventBatch)]}, "One event, or `{\"events\": [...]}` (up to 1,000)."),
    )
    async def events(self, request: Request, key: ClientKey = None) -> Stored:
        self.clients.check(key)
        batch = validate_batch(EventBatch, EventIn, "events", await read_json(request))
        events = batch.keyed(uuid.uuid4().hex)  # ids of this write alone: sent again, it is not stored twice
        return Stored(stored=await self._call("ranker", lambda: self.ranker.record_events.remote(events), write=True))

    @api.get("/v1/scenes", responses=error_responses(401, 503))
    async def scenes(self, key: ClientKey = None) -> list[dict[str, Any]]:
        self.clients.check(key)
        return await self._call("ranker", lambda: self.ranker.scenes.remote())

    @api.get("/healthz", summary="Liveness: the ingress answers (no key needed)", response_model=Health)
    async def healthz(self) -> Health:
        return Health(status="ok")

    @api.get(
        "/readyz",
        summary="Readiness: every stage has loaded its models and indexes (no key needed)",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready yet: `waiting_for` names the stages still loading."}},
    )
    async def readyz(self) -> JSONResponse:
        names = ["intent", "encoder", "ranker", "profiler"]
        handles = [getattr(self, n) for n in names]
        results = await asyncio.gather(*(asyncio.wait_for(h.ready.remote(), 2.0) for h in handles), return_exceptions=True)
        waiting = [n for n, r in zip(names, results) if r is not True]
        return JSONResponse({"ready": not waiting, "waiting_for": waiting}, status_code=503 if waiting else 200)
