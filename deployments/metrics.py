"""Prometheus metrics of the service through ray.util.metrics (exported by every Ray node)."""

from __future__ import annotations

from ray.util.metrics import Counter, Histogram

from llmrec.serving.schemas import RecommendResponse

LATENCY_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


class ServiceMetrics:
    def __init__(self) -> None:
        self.requests = Counter("llmrec_requests", "HTTP requests by route and status.", tag_keys=("route", "status"))
        self.latency = Histogram("llmrec_request_latency_ms", "HTTP request latency.", LATENCY_MS, tag_keys=("route",))
        self.stage_latency = Histogram("llmrec_stage_latency_ms", "Pipeline stage latency.", LATENCY_MS, tag_keys=("stage",))
        self.stage_outcomes = Counter("llmrec_stage_outcomes", "Stage results: ok, rejected, timeout, error.", tag_keys=("stage", "outcome"))
        self.fallbacks = Counter("llmrec_degraded_answers", "Answers given with a stage replaced by its fallback.", tag_keys=("stage",))
        self.intents = Counter("llmrec_intent_answers", "Parsed intents by source: model, cache (a hit) or fallback.", tag_keys=("source",))

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status)})
        self.latency.observe(seconds * 1000, tags={"route": route})

    def stage(self, name: str, seconds: float, outcome: str) -> None:
        self.stage_latency.observe(seconds * 1000, tags={"stage": name})
        self.stage_outcomes.inc(tags={"stage": name, "outcome": outcome})

    def answered(self, response: RecommendResponse) -> None:
        for note in response.degraded:
            self.fallbacks.inc(tags={"stage": note.split(":", 1)[0]})
        if response.intent is not None:
            self.intents.inc(tags={"source": response.intent.source})
