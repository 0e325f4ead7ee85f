"""Ingress deployment: the HTTP API v1 (FastAPI), running llmrec's Pipeline over deployment handles.

No `from __future__ import annotations` here: FastAPI reads the route annotations as Serve rebinds them.
"""


import asyncio
import logging
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

import llmrec
from deployments.metrics import ServiceMetrics
from llmrec.config import PipelineConfig
from llmrec.data.items import item_text
from llmrec.intent.schema import Intent
from llmrec.serving.http import (
    AdminKey,
    BodyLimitMiddleware,
    RequestIdMiddleware,
    install_error_handlers,
    request_id_of,
)
from llmrec.serving.pipeline import Pipeline
from llmrec.serving.schemas import (
    EventBatch,
    IntentRequest,
    ItemBatch,
    RecommendRequest,
    RecommendResponse,
)

log = logging.getLogger("ray.serve")

api = FastAPI(
    title="llmrec",
    version=llmrec.__version__,
    description="LLM-powered, multi-scene recommendations with cold start. Admin routes need `Authorization: Bearer KEY`.",
)
api.add_middleware(BodyLimitMiddleware)
install_error_handlers(api)
api.add_middleware(RequestIdMiddleware, observe=lambda: getattr(api.state, "observe_request", None))

Admin = Annotated[str | None, Header(alias="Authorization", description="Bearer KEY (admin routes)")]


@serve.deployment(name="Ingress", max_ongoing_requests=200, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(api)
class Ingress:
    def __init__(self, config: PipelineConfig, intent: DeploymentHandle, encoder: DeploymentHandle, ranker: DeploymentHandle) -> None:
        self.intent, self.encoder, self.ranker = intent, encoder, ranker
        self.metrics = ServiceMetrics()
        self.pipeline = Pipeline(intent, encoder, ranker, config, observe=self.metrics.stage)
        self.admin = AdminKey.from_env(config.server.api_key_env)
        api.state.max_body_bytes = config.server.max_body_bytes
        api.state.observe_request = self.metrics.request

    @api.post("/v1/recommend", response_model=RecommendResponse)
    async def recommend(self, body: RecommendRequest, request: Request) -> Response:
        response = await self.pipeline.recommend(body, request_id_of(request))
        self.metrics.answered(response)
        return Response(response.model_dump_json(), media_type="application/json")  # already valid: no second validation

    @api.post("/v1/intent", response_model=Intent)
    async def intent(self, body: IntentRequest) -> Intent:
        return await self.pipeline.parse_intent(body.query)

    @api.put("/v1/items", summary="Add or replace items (admin): one item object, or {\"items\": [...]}")
    async def put_items(self, body: Annotated[dict[str, Any], Body()], authorization: Admin = None) -> dict[str, Any]:
        self.admin.check(authorization)
        batch = ItemBatch.from_body(body)
        await self.ranker.check_scenes.remote(sorted({i.scene for i in batch.items}))
        vectors = await self.encoder.encode.remote([item_text(i) for i in batch.items])
        ids = await self.ranker.add_items.remote(batch.items, vectors)
        return {"upserted": ids}

    @api.delete("/v1/items/{item_id}", summary="Remove an item (admin)")
    async def delete_item(self, item_id: str, authorization: Admin = None) -> dict[str, Any]:
        self.admin.check(authorization)
        return {"deleted": await self.ranker.remove_items.remote([item_id])}

    @api.post("/v1/events", summary="Record feedback: one event object, or {\"events\": [...]}")
    async def events(self, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        batch = EventBatch.from_body(body)
        return {"stored": await self.ranker.record_events.remote(batch.events)}

    @api.get("/v1/scenes")
    async def scenes(self) -> list[dict[str, Any]]:
        return await self.ranker.scenes.remote()

    @api.get("/healthz", summary="Liveness: the ingress answers")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", summary="Readiness: every stage has loaded its models and indexes")
    async def readyz(self) -> JSONResponse:
        names = ["intent", "encoder", "ranker"]
        handles = [getattr(self, n) for n in names]
        results = await asyncio.gather(*(asyncio.wait_for(h.ready.remote(), 2.0) for h in handles), return_exceptions=True)
        waiting = [n for n, r in zip(names, results) if r is not True]
        return JSONResponse({"ready": not waiting, "waiting_for": waiting}, status_code=503 if waiting else 200)
