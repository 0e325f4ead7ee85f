"""The request flow with injected slow and broken stages: degrade and say so, or 503; never hang."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrec.config import DeadlineConfig
from llmrec.errors import NotFoundError, UnavailableError
from llmrec.serving.pipeline import LocalStages, Pipeline
from llmrec.serving.schemas import RecommendRequest


class Faulty(LocalStages):
    """The demo's real stages, with chosen ones made slow (sleeping past any budget) or broken."""

    def __init__(self, demo, slow: set[str] = frozenset(), broken: set[str] = frozenset()) -> None:
        super().__init__(demo.intent, demo.encoder, demo.router, demo.retriever, demo.ranking)
        self.slow, self.broken = slow, broken

    def __getattribute__(self, name: str):
        method = super().__getattribute__(name)
        if name in super().__getattribute__("slow") | super().__getattribute__("broken"):
            broken = name in super().__getattribute__("broken")

            async def faulty(*args, **kwargs):
                if broken:
                    raise RuntimeError(f"{name} is down")
                await asyncio.sleep(30)
                return await method(*args, **kwargs)

            return faulty
        return method


def run(demo, request: RecommendRequest, **faults):
    deadline = DeadlineConfig(total_ms=3000, intent_ms=200, encode_ms=1500, rank_ms=300)
    pipeline = Pipeline(Faulty(demo, **faults), demo.config.model_copy(update={"deadline": deadline}))
    started = time.perf_counter()
    response = asyncio.run(pipeline.recommend(request))
    return response, time.perf_counter() - started


def test_slow_intent_parser_falls_back_within_its_budget(demo):
    response, seconds = run(demo, RecommendRequest(query="songs for a summer road trip", k=5), slow={"parse_intent"})
    assert seconds < 2.5
    assert response.scene == "music" and response.scene_source == "embedding" and len(response.items) == 5
    assert response.intent.source == "fallback"
    assert response.degraded == ["intent: gave no answer within 200 ms; routed by embedding with the raw text"]


def test_broken_reranker_answers_in_retrieval_order_and_says_so(demo):
    response, _ = run(demo, RecommendRequest(scene="movie", query="animated penguins", k=5), broken={"rank"})
    scores = [i.score for i in response.items]
    assert len(response.items) == 5 and scores == sorted(scores, reverse=True)
    assert response.degraded[0].startswith("rank: failed (RuntimeError: rank is down)")
    assert all(i.reasons == ["ranked by similarity alone: the ranking stage did not answer"] for i in response.items)


def test_slow_encoder_still_serves_a_known_user_from_history(demo):
    response, seconds = run(demo, RecommendRequest(user_id="1", k=10), slow={"encode"})
    assert seconds < 2.5 and len(response.items) == 10
    assert response.scene_source == "history" and response.degraded[0].startswith("encode: gave no answer")


def test_a_query_that_cannot_be_routed_without_the_encoder_is_a_503(demo):
    with pytest.raises(UnavailableError, match="cannot route the query without the encoder"):
        run(demo, RecommendRequest(query="something to enjoy", k=5), broken={"encode"})


def test_a_stage_with_no_substitute_ends_the_request_with_a_503_in_time(demo):
    started = time.perf_counter()
    with pytest.raises(UnavailableError, match="the retrieve stage gave no answer"):
        run(demo, RecommendRequest(scene="movie", query="jazz", k=5), slow={"search"})
    assert time.perf_counter() - started < 3.5


def test_client_errors_pass_through_unchanged(demo):
    with pytest.raises(NotFoundError, match="history refers to unknown item ids"):
        run(demo, RecommendRequest(history=["No Such Movie (1901)"]))
