"""Overload benchmark (a command, not a test): the HTTP app driven past its capacity.

First the capacity is measured (closed loop, a few callers, the structured and free-text mixes of
`bench.serve`), then requests arrive open-loop at `factor` times that rate for `seconds`, whatever
the app answers, then the load stops and the app is watched while it settles. Each answer is
accepted (200), shed (503, the service's own refusal) or failed (anything else, or no answer);
the shed ones should come back fast and the accepted ones within the deadline. When a `replicas`
probe is given (the local app's `serve.status()`), the number of replicas of each deployment is
sampled every second, so autoscaling up under the load and down after it shows in the timeline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from llmrec.bench.serve import drive_http, request_mix

Replicas = Callable[[], dict[str, Any]]  # deployment -> its replicas now (a count, or "running+starting")


def _percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}


async def _open_loop(url: str, bodies: list[dict[str, Any]], rate: float, seconds: float, headers: dict[str, str], timeout_s: float) -> dict[str, Any]:
    import httpx

    outcomes: dict[str, list[float]] = {"accepted": [], "shed": [], "failed": []}
    retry_after: list[str] = []
    failures: dict[str, int] = {}

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            response = await client.post("/v1/recommend", json=body, headers=headers)
            status = response.status_code
            if status == 503:
                retry_after.append(response.headers.get("retry-after", ""))
        except httpx.HTTPError as error:
            status = 0
            failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
        kind = "accepted" if status == 200 else "shed" if status == 503 else "failed"
        if kind == "failed" and status:
            failures[str(status)] = failures.get(str(status), 0) + 1
        outcomes[kind].append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:
        tasks, started, n = [], time.perf_counter(), 0
        while (now := time.perf_counter() - started) < seconds:
            due = int(now * rate) + 1
            while n < due:
                tasks.append(asyncio.create_task(one(client, bodies[n % len(bodies)])))
                n += 1
            await asyncio.sleep(max(0.0, (n / rate) - (time.perf_counter() - started)))
        await asyncio.gather(*tasks)
    return {
        "sent": n,
        "offered_rps": round(rate, 1),
        **{kind: len(values) for kind, values in outcomes.items()},
        "accepted_latency": _percentiles(outcomes["accepted"]),
        "shed_latency": _percentiles(outcomes["shed"]),
        "failed_latency": _percentiles(outcomes["failed"]),
        "shed_with_retry_after": sum(bool(v) for v in retry_after),
        "failures": failures,
    }


def _watch(replicas: Replicas | None, timeline: list[dict[str, Any]], phase: str, started: float) -> None:
    if replicas is not None:
        timeline.append({"t_s": round(time.perf_counter() - started, 1), "phase": phase, **replicas()})


def overload(
    url: str, users: list[str], factor: float = 5.0, seconds: float = 60.0, settle_s: float = 90.0, key: str | None = None, replicas: Replicas | None = None
) -> dict[str, Any]:
    """Capacity, then `factor` x capacity for `seconds`, then `settle_s` of quiet, with the replica timeline."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    bodies = [b for pair in zip(request_mix("structured", 200, users), request_mix("free-text", 200, users)) for b in pair]
    drive_http(url, bodies[:10], 1)  # warm-up
    capacity = drive_http(url, bodies[:120], 4)
    rate = factor * capacity["throughput_rps"]
    timeline: list[dict[str, Any]] = []
    started = time.perf_counter()
    _watch(replicas, timeline, "before", started)

    async def loaded() -> dict[str, Any]:
        async def sample() -> None:
            while True:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(_watch, replicas, timeline, "load", started)

        sampler = asyncio.create_task(sample())
        try:
            return await _open_loop(url, bodies, rate, seconds, headers, timeout_s=60.0)
        finally:
            sampler.cancel()

    result = asyncio.run(loaded())
    settle_until = time.perf_counter() + settle_s
    while time.perf_counter() < settle_until:
        time.sleep(2.0)
        _watch(replicas, timeline, "after", started)
    return {"capacity_rps": capacity["throughput_rps"], "factor": factor, "seconds": seconds, **result, "replicas": timeline}


def format_result(result: dict[str, Any]) -> str:
    acc, shed = result["accepted_latency"], result["shed_latency"]
    lines = [
        f"capacity {result['capacity_rps']} req/s (closed loop, 4 callers); offered {result['offered_rps']} req/s "
        f"({result['factor']}x) for {result['seconds']:.0f} s: {result['sent']} sent",
        f"accepted {result['accepted']} (p50 {acc['p50_ms']} ms, p99 {acc['p99_ms']} ms, max {acc['max_ms']} ms)",
        f"shed     {result['shed']} with 503 (p50 {shed['p50_ms']} ms, p99 {shed['p99_ms']} ms; {result['shed_with_retry_after']} with Retry-After)",
        f"failed   {result['failed']} (other statuses or no answer: {result['failures'] or 'none'})",
    ]
    if result["replicas"]:
        names = sorted({k for row in result["replicas"] for k in row if k not in ("t_s", "phase")})
        lines.append("\nreplicas per deployment (sampled):")
        lines.append("| t s | phase | " + " | ".join(names) + " |")
        lines.append("|---|---|" + "---|" * len(names))
        last = None
        for row in result["replicas"]:
            key = (row["phase"], *(row.get(n) for n in names))
            if key != last:  # only the samples where something changed
                lines.append(f"| {row['t_s']} | {row['phase']} | " + " | ".join(str(row.get(n, "")) for n in names) + " |")
                last = key
    return "\n".join(lines)
