"""One recommendation request through the stages, within a deadline, in at most three sequential calls.

    with a query:    intent ∥ encode(query)           → Ranker.recommend
    without a query: Ranker.prepare (the user's taste) → encode(taste text) → Ranker.recommend

The stages are called as deployment handles are (`await stage.method.remote(...)`): under Ray Serve
they are the deployments' handles, in one process `LocalHandle`s over the same objects. The Ranker
routes, proposes, retrieves and ranks in one call (llmrec/serving/ranker.py); its sub-stages' timings
and degradations join the answer's. A stage that fails degrades the answer where there is a
sensible substitute and says so, otherwise the request ends with a 503 in time (`budget.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from llmrec.config import PipelineConfig
from llmrec.errors import RequestError
from llmrec.intent.rules import fallback_intent, without_exclusions
from llmrec.intent.schema import Intent
from llmrec.serving.budget import Observer, RequestClock, Retryable
from llmrec.serving.schemas import RecommendRequest, RecommendResponse

# A DeploymentHandle of the stage's deployment, or a LocalHandle over the stage object.
Handle = Any


class Pipeline:
    def __init__(
        self, intent: Handle, encoder: Handle, ranker: Handle, config: PipelineConfig, observe: Observer | None = None, retryable: Retryable | None = None
    ) -> None:
        self.intent, self.encoder, self.ranker = intent, encoder, ranker
        self.config = config
        self.observe = observe
        self.retryable = retryable

    def check_k(self, k: int | None) -> int:
        k = k or self.config.default_k
        if k > self.config.max_k:
            raise RequestError(f"k={k} is above the maximum {self.config.max_k}; ask for 1 to {self.config.max_k} items")
        return k

    async def parse_intent(self, text: str) -> Intent:
        """The intent alone (POST /v1/intent), under the same budget and fallback as in a recommendation."""
        run = RequestClock(self.config.deadline, self.observe, retryable=self.retryable)
        return await run.stage("intent", lambda: self.intent.parse.remote(text), lambda: fallback_intent(text), "used the raw text")

    async def recommend(self, request: RecommendRequest, request_id: str | None = None, reveal_history: bool = True) -> RecommendResponse:
        """The answer; without `reveal_history` (a caller that may not see the user's stored history, e.g.
        an HTTP client key) its reasons name only the items the request itself sent."""
        request = request.model_copy(update={"k": self.check_k(request.k)})
        run = RequestClock(self.config.deadline, self.observe, retryable=self.retryable)
        query = request.query
        context = None
        if query:
            intent, vector = await asyncio.gather(
                run.stage("intent", lambda: self.intent.parse.remote(query), lambda: fallback_intent(query), "routed by embedding with the raw text"),
                run.stage("encode", lambda: self.encoder.embed.remote(without_exclusions(query)), lambda: None, "ranked without text similarity"),
            )
        else:
            intent = None
            context = await run.stage("prepare", lambda: self.ranker.prepare.remote(request))
            vector = None
            if context.text:
                vector = await run.stage("encode", lambda: self.encoder.embed.remote(context.text), lambda: None, "ranked without text similarity")
        ranked = await run.stage("ranker", lambda: self.ranker.recommend.remote(request, intent, vector, context, run.remaining(), reveal_history))
        decision = ranked.decision
        return RecommendResponse(
            items=ranked.items,
            scene=decision.scene,
            scene_source=decision.source,
            scene_scores=decision.scores,
            user_known=ranked.user_known,
            intent=intent,
            degraded=[*run.degraded, *ranked.degraded],
            timings_ms={**run.timings, **ranked.timings_ms, "total": run.elapsed_ms()},
            model_versions={"encoder": self.config.encoder.model, "collaborative": ranked.collaborative},
            request_id=request_id,
        )
