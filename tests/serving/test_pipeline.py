"""The request flow with injected slow and broken stages: degrade and say so, or 503; never hang."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from llmrec.config import DeadlineConfig
from llmrec.errors import NotFoundError, UnavailableError
from llmrec.serving.handles import LocalHandle
from llmrec.serving.pipeline import Pipeline
from llmrec.serving.schemas import RecommendRequest

STUCK_S = 4  # a slow stage's thread sleeps this long: past every budget below


class Faulty:
    """A real stage object whose chosen methods sleep past any budget or raise."""

    def __init__(self, target, slow: set[str], broken: set[str]) -> None:
        self.target, self.slow, self.broken = target, slow, broken

    def __getattr__(self, name: str):
        method = getattr(self.target, name)
        if name not in self.slow | self.broken:
            return method

        def faulty(*args, **kwargs):
            if name in self.broken:
                raise RuntimeError(f"{name} is down")
            time.sleep(STUCK_S)
            return method(*args, **kwargs)

        return faulty


def run(demo, request: RecommendRequest, slow: frozenset[str] = frozenset(), broken: frozenset[str] = frozenset()):
    """One request through the demo's real stages, with faults injected by stage method name:
    `parse`, `embed` (stage calls) or `search`, `rank` (the Ranker's retriever and its ranking step)."""
    deadline = DeadlineConfig(total_ms=3000, intent_ms=200, encode_ms=1500, retrieve_ms=1000, rank_ms=300)
    config = demo.config.model_copy(update={"deadline": deadline})
    ranker = copy.copy(demo.ranker)
    ranker.config = config
    ranker.retriever = Faulty(demo.ranker.retriever, slow, broken)
    if "rank" in slow | broken:
        ranker.rank = Faulty(demo.ranker, slow, broken).rank
    pipeline = Pipeline(LocalHandle(Faulty(demo.intent, slow, broken)), LocalHandle(Faulty(demo.encoder, slow, broken)), LocalHandle(ranker), config)

    async def timed():  # a stuck thread outlives the request; asyncio.run waits for it at exit
        started = time.perf_counter()
        return await pipeline.recommend(request), time.perf_counter() - started

    return asyncio.run(timed())


def test_slow_intent_parser_falls_back_within_its_budget(demo):
    response, seconds = run(demo, RecommendRequest(query="songs for a summer road trip", k=5), slow={"parse"})
    assert seconds < 2.5
    assert response.scene == "music" and response.scene_source == "embedding" and len(response.items) == 5
    assert response.intent.source == "fallback"
    assert response.degraded == ["intent: gave no answer within 200 ms; routed by embedding with the raw text"]


def test_out_of_scope_judged_by_the_model_gets_no_items_and_a_fallback_parse_gets_the_nearest_scene(demo):
    """The Ranker reads who judged the scene: the model's null means no scene fits; the fallback's
    null (no model ran) leaves routing to the embedding."""
    from llmrec.intent.schema import Intent

    request = RecommendRequest(query="book me a hotel room in Rome", k=5)
    vector = demo.encoder.embed(request.query)
    judged = asyncio.run(demo.ranker.recommend(request, Intent(scene=None, source="model", query=request.query), vector, None, 5.0))
    assert (judged.decision.scene, judged.decision.source, judged.items) == (None, "none_fits", [])
    unjudged = asyncio.run(demo.ranker.recommend(request, Intent(scene=None, source="fallback", query=request.query), vector, None, 5.0))
    assert unjudged.decision.source == "embedding" and len(unjudged.items) == 5


def test_broken_ranking_answers_in_retrieval_order_and_says_so(demo):
    response, _ = run(demo, RecommendRequest(scene="movie", query="animated penguins", k=5), broken={"rank"})
    scores = [i.score for i in response.items]
    assert len(response.items) == 5 and scores == sorted(scores, reverse=True)
    assert response.degraded[0].startswith("rank: failed (RuntimeError: rank is down)")
    assert all(i.reasons == ["ranked by similarity alone: the ranking stage did not answer"] for i in response.items)


def test_slow_ranking_answers_in_retrieval_order_within_its_budget(demo):
    response, seconds = run(demo, RecommendRequest(scene="movie", query="animated penguins", k=5), slow={"rank"})
    assert seconds < 2.5 and len(response.items) == 5
    assert response.degraded == ["rank: gave no answer within 300 ms; ranked by retrieval similarity alone"]


def test_slow_encoder_still_serves_a_known_user_from_history(demo):
    response, seconds = run(demo, RecommendRequest(user_id="1", k=10), slow={"embed"})
    assert seconds < 2.5 and len(response.items) == 10
    assert response.scene_source == "history" and response.degraded[0].startswith("encode: gave no answer")


def test_a_query_that_cannot_be_routed_without_the_encoder_is_a_503(demo):
    with pytest.raises(UnavailableError, match="cannot route the query without the encoder"):
        run(demo, RecommendRequest(query="something to enjoy", k=5), broken={"embed"})


def test_a_stage_with_no_substitute_ends_the_request_with_a_503_in_time(demo):
    started = time.perf_counter()
    with pytest.raises(UnavailableError, match="the retrieve stage gave no answer"):
        run(demo, RecommendRequest(scene="movie", query="jazz", k=5), slow={"search"})
    assert time.perf_counter() - started < 3.5 + STUCK_S


def test_each_answer_names_its_stages_and_costs_at_most_three_calls(demo):
    calls: list[str] = []

    class Counting(LocalHandle):
        def __getattr__(self, name):
            calls.append(name)
            return super().__getattr__(name)

    pipeline = Pipeline(Counting(demo.intent), Counting(demo.encoder), Counting(demo.ranker), demo.config)
    free_text = asyncio.run(pipeline.recommend(RecommendRequest(query="a funny animated movie", k=5)))
    assert sorted(calls) == ["embed", "parse", "recommend"]  # intent ∥ encode, then the Ranker
    assert {"intent", "encode", "ranker", "prepare", "route", "collaborative", "retrieve", "rank", "total"} <= set(free_text.timings_ms)
    calls.clear()
    by_user = asyncio.run(pipeline.recommend(RecommendRequest(user_id="1", k=5)))
    assert calls == ["prepare", "embed", "recommend"]
    assert {"prepare", "encode", "ranker", "route", "retrieve", "rank"} <= set(by_user.timings_ms)


def test_client_errors_pass_through_unchanged(demo):
    with pytest.raises(NotFoundError, match="history refers to unknown item ids"):
        run(demo, RecommendRequest(history=["No Such Movie (1901)"]))


class ReplicaDied(RuntimeError):
    """Stands for the error a handle call raises when its replica (or node) died."""


class DiesOnce:
    """A real stage object whose `name` method fails once, as a call to a replica that just died."""

    def __init__(self, target, name: str) -> None:
        self.target, self.name, self.failed = target, name, False

    def __getattr__(self, attribute: str):
        method = getattr(self.target, attribute)
        if attribute != self.name or self.failed:
            return method

        def dies(*args, **kwargs):
            self.failed = True
            raise ReplicaDied("the replica died")

        return dies


@pytest.mark.parametrize("stage", ["embed", "recommend"])
def test_a_call_to_a_replica_that_died_is_retried_once_within_the_budget(demo, stage):
    encoder = DiesOnce(demo.encoder, stage) if stage == "embed" else demo.encoder
    ranker = DiesOnce(demo.ranker, stage) if stage == "recommend" else demo.ranker
    retrying = Pipeline(LocalHandle(demo.intent), LocalHandle(encoder), LocalHandle(ranker), demo.config, retryable=lambda e: isinstance(e, ReplicaDied))
    response = asyncio.run(retrying.recommend(RecommendRequest(query="a funny animated movie", k=5)))
    assert len(response.items) == 5 and response.degraded == [] and (encoder if stage == "embed" else ranker).failed


def test_without_a_retry_rule_a_dead_replica_degrades_or_fails_the_request(demo):
    pipeline = Pipeline(LocalHandle(demo.intent), LocalHandle(DiesOnce(demo.encoder, "embed")), LocalHandle(demo.ranker), demo.config)
    response = asyncio.run(pipeline.recommend(RecommendRequest(scene="movie", query="a funny animated movie", k=5)))
    assert response.degraded[0].startswith("encode: failed (ReplicaDied")
    with pytest.raises(UnavailableError, match="the ranker stage failed"):
        asyncio.run(Pipeline(LocalHandle(demo.intent), LocalHandle(demo.encoder), LocalHandle(DiesOnce(demo.ranker, "recommend")), demo.config).recommend(RecommendRequest(query="jazz", k=5)))
