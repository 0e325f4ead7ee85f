"""Load benchmark (a command, not a test): the HTTP endpoint at several concurrency levels, next to
the same pipeline called in-process on the same machine, so the serving overhead is a ratio.

Two request mixes: `structured` (user ids and click histories, no free text) and `free-text`
(queries across the demo's scenes). Every level sends the same bodies in the same order after a
warm-up; latencies are per request, throughput is requests over wall time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from llmrec.serving.schemas import RecommendRequest

QUERIES = [
    "funny animated movie for kids", "a scary horror film for halloween night", "romantic comedy for a date night",
    "epic space adventure with aliens", "a gritty crime thriller", "songs for a summer road trip", "a hip-hop track to dance to",
    "sad love ballads", "classic rock anthems", "healthy snacks for my dog", "good organic green tea", "gluten free pasta",
    "strong dark roast coffee beans", "spicy hot sauce", "a documentary about nature", "eighties pop hits",
]
HISTORIES = [
    ["Toy Story (1995)", "Aladdin (1992)", "Lion King, The (1994)"],
    ["Alien (1979)", "Terminator, The (1984)", "Blade Runner (1982)"],
    ["Shining, The (1980)", "Halloween (1978)"],
    ["When Harry Met Sally... (1989)", "Sleepless in Seattle (1993)"],
]


def request_mix(mix: str, n: int, users: list[str]) -> list[dict[str, Any]]:
    """`n` request bodies of one mix, deterministic."""
    if mix == "free-text":
        return [{"query": QUERIES[i % len(QUERIES)], "k": 10} for i in range(n)]
    if mix == "structured":
        return [
            {"user_id": users[i % len(users)], "k": 10} if i % 2 == 0 else {"history": HISTORIES[i % len(HISTORIES)], "k": 10}
            for i in range(n)
        ]
    raise ValueError(f"unknown mix {mix!r}: use structured or free-text")


def hop_costs(latency_s: float, timings: dict[str, float]) -> dict[str, float]:
    """Where one HTTP answer's time went outside the stages' own work, from its `timings_ms`:
    `http` is the client's latency minus the pipeline's total (proxy, ingress, FastAPI), `ranker`
    the Ranker call minus its sub-stages (the hop there and back)."""
    inside = sum(timings.get(s, 0.0) for s in ("route", "collaborative", "retrieve", "rank"))
    if "intent" in timings:  # with a query the Ranker prepared the user's side itself
        inside += timings.get("prepare", 0.0)
    return {"http": latency_s * 1000 - timings.get("total", 0.0), "ranker": timings.get("ranker", 0.0) - inside}


def summarise(latencies: list[float], wall: float, errors: int, hops: list[dict[str, float]] | None = None) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    row = {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "throughput_rps": round(len(latencies) / wall, 2),
    }
    for name in ("http", "ranker"):
        if hops:
            row[f"{name}_hop_p50_ms"] = round(statistics.median(h[name] for h in hops), 1)
    return row


async def _drive_http(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    import httpx

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    hops: list[dict[str, float]] = []
    errors = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post("/v1/recommend", json=body)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
            if response.status_code == 200:
                hops.append(hop_costs(latencies[-1], response.json()["timings_ms"]))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return summarise(latencies, time.perf_counter() - started, errors, hops)


def drive_http(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    return asyncio.run(_drive_http(url, bodies, concurrency))


def drive_in_process(recommend: Callable[[RecommendRequest], Any], bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """The same bodies through the in-process pipeline, `concurrency` caller threads."""
    requests = [RecommendRequest.model_validate(b) for b in bodies]

    def timed(request: RecommendRequest) -> float:
        started = time.perf_counter()
        recommend(request)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(timed, requests))
    return summarise(latencies, time.perf_counter() - started, 0)


def run_levels(drive: Callable[[list[dict[str, Any]], int], dict[str, float]], mode: str, mixes: dict[str, list[dict[str, Any]]], levels: list[int], warmup: int) -> list[dict[str, Any]]:
    rows = []
    for mix, bodies in mixes.items():
        drive(bodies[:warmup], 1)
        for concurrency in levels:
            rows.append({"mode": mode, "mix": mix, "concurrency": concurrency, **drive(bodies, concurrency)})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Side by side per (mix, concurrency): HTTP, in-process, and their ratios."""
    by_key = {(r["mode"], r["mix"], r["concurrency"]): r for r in rows}
    lines = [
        "| mix | concurrency | HTTP p50 / p95 / p99 ms | HTTP req/s | in-process p50 / p95 / p99 ms | in-process req/s | p50 ratio | throughput ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (mode, mix, concurrency), http in by_key.items():
        local = by_key.get(("in-process", mix, concurrency))
        if mode != "http" or local is None:
            continue
        lines.append(
            f"| {mix} | {concurrency} | {http['p50_ms']} / {http['p95_ms']} / {http['p99_ms']} | {http['throughput_rps']} | "
            f"{local['p50_ms']} / {local['p95_ms']} / {local['p99_ms']} | {local['throughput_rps']} | "
            f"{http['p50_ms'] / local['p50_ms']:.2f}x | {http['throughput_rps'] / local['throughput_rps']:.2f}x |"
        )
    errors = sum(r["errors"] for r in rows)
    lines.append(f"\nHTTP errors: {errors}; medians of {statistics.median([r['requests'] for r in rows]):.0f} requests per row")
    lines.append("\nOutside the stages' own work (HTTP, p50 ms): `http` = client latency - pipeline total (proxy, ingress); `ranker` = the Ranker call - its sub-stages")
    for (mode, mix, concurrency), http in by_key.items():
        if mode == "http" and "http_hop_p50_ms" in http:
            lines.append(f"- {mix}, concurrency {concurrency}: http {http['http_hop_p50_ms']}, ranker {http['ranker_hop_p50_ms']}")
    return "\n".join(lines)
