"""Load benchmark (a command, not a test): the HTTP endpoint at several concurrency levels, next to
the same pipeline called in-process on the same machine, so the serving overhead is a ratio.

Two request mixes: `structured` (user ids and click histories, no free text) and `free-text`
(queries across the demo's scenes). Every level sends the same bodies in the same order after a
warm-up; latencies are per request, throughput is requests over wall time.

Also the API fuzzer (`llmrec bench fuzz`, and a CI-sized run in tests/deployments/test_serve_http.py):
schemathesis against the app's own /openapi.json with every check.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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
    errors: dict[str, int] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post("/v1/recommend", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                hops.append(hop_costs(latencies[-1], response.json()["timings_ms"]))
            else:
                why = f"{response.status_code} {response.text[:90]}"
                errors[why] = errors.get(why, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return {**summarise(latencies, time.perf_counter() - started, sum(errors.values()), hops), "error_kinds": errors}


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
    for r in rows:
        for why, n in (r.get("error_kinds") or {}).items():
            lines.append(f"- {r['mix']}, concurrency {r['concurrency']}: {n} x {why}")
    lines.append("\nOutside the stages' own work (HTTP, p50 ms): `http` = client latency - pipeline total (proxy, ingress); `ranker` = the Ranker call - its sub-stages")
    for (mode, mix, concurrency), http in by_key.items():
        if mode == "http" and "http_hop_p50_ms" in http:
            lines.append(f"- {mix}, concurrency {concurrency}: http {http['http_hop_p50_ms']}, ranker {http['ranker_hop_p50_ms']}")
    return "\n".join(lines)


# ---- API fuzzing -------------------------------------------------------------------------------------

# Statuses a request that is valid by the JSON Schema may still get (schemathesis' positive_data_acceptance
# check), each for a rule JSON Schema does not express: 400 `k` above the configured max_k, a duplicate
# item id in one batch; 404 unknown users, items and scenes; 413 a body over server.max_body_bytes; 422
# cross-field rules (an empty request, a rating without a value, range min above max) and strings that
# are blank once stripped; 503 a stage over its deadline on a busy machine.
POSITIVE_STATUSES = ["2xx", "400", "401", "403", "404", "413", "422", "503"]
FUZZ_PHASES = "examples,coverage,fuzzing,stateful"


def fuzz_config(path: Path) -> Path:
    path.write_text(
        "# written by llmrec.bench.serve.fuzz\n"
        "[checks.positive_data_acceptance]\n"
        f"expected-statuses = {json.dumps(POSITIVE_STATUSES)}\n"
    )
    return path


def schemathesis_command() -> list[str]:
    exe = shutil.which("schemathesis", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if exe is None:
        raise FileNotFoundError("schemathesis is not installed: pip install -e '.[dev]' (it is in the dev extra)")
    return [exe]


def fuzz(url: str, cases: int = 150, key: str | None = None, seed: int = 0, workers: int = 2, phases: str = FUZZ_PHASES, report_dir: Path | None = None, timeout_s: float = 1800) -> dict[str, Any]:
    """Fuzz a running app with schemathesis from its /openapi.json, all checks; `cases` is spread over
    the operations (at least 2 each per phase that generates). Returns the exit code, the counts of the
    run's JSON report and the console output. `key` (the admin key opens every route) goes on every
    request; schemathesis still sends requests without it or with a wrong one (the ignored_auth check)."""
    schema_url = url.rstrip("/") + "/openapi.json"
    with urllib.request.urlopen(schema_url, timeout=60) as response:
        document = json.load(response)
    operations = sum(1 for methods in document["paths"].values() for m in methods if m in {"get", "put", "post", "delete", "patch"})
    per_operation = max(2, math.ceil(cases / max(operations, 1)))
    with tempfile.TemporaryDirectory(prefix="llmrec-fuzz-") as tmp:
        work = Path(tmp)
        reports = Path(report_dir) if report_dir else work / "report"
        command = [
            *schemathesis_command(), "--no-color", "--config-file", str(fuzz_config(work / "schemathesis.toml")), "run", schema_url,
            "--checks", "all", "--phases", phases, "--max-examples", str(per_operation), "--seed", str(seed), "--workers", str(workers),
            "--request-timeout", "60", "--report", "json,junit", "--report-dir", str(reports), "--suppress-health-check", "too_slow,filter_too_much",
        ]
        if key:
            command += ["--header", f"Authorization: Bearer {key}"]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout_s)
        seconds = time.perf_counter() - started
        summary = _fuzz_summary(reports)
        if report_dir is None:
            summary.pop("report_file", None)  # in the temporary directory, gone with it
    output = done.stdout + done.stderr
    if key:
        output = output.replace(key, "***")
    if report_dir is None:  # schemathesis names report files in the temporary directory, gone by now
        output = "\n".join(line for line in output.splitlines() if not line.startswith(("Reports:", "  - JUnit:", "  - JSON:")))
    return {"returncode": done.returncode, "operations": operations, "max_examples_per_operation": per_operation, "seconds": round(seconds, 1), **summary, "output": output}


def _fuzz_summary(reports: Path) -> dict[str, Any]:
    """Counts from schemathesis' JSON run report: test cases, failures, errors and the warnings it raised."""
    found = sorted(reports.glob("*.json")) if reports.is_dir() else []
    if not found:
        return {"failures": None, "errors": None}
    report = json.loads(found[-1].read_text())
    warnings = {name: where for name, where in (report.get("warnings") or {}).items() if where}
    return {
        "test_cases": report.get("test_cases", {}), "failures": len(report.get("failures") or []), "errors": len(report.get("errors") or []),
        "warnings": warnings, "report_file": str(found[-1]),
    }


def format_fuzz(result: dict[str, Any]) -> str:
    cases = result.get("test_cases") or {}
    verdict = "no failures" if result["returncode"] == 0 else f"FAILED (schemathesis exit code {result['returncode']})"
    return (
        f"{result['output'].rstrip()}\n\nllmrec bench fuzz: {verdict}; {cases.get('generated', '?')} test cases over {result['operations']} operations "
        f"(max {result['max_examples_per_operation']} examples each per phase), {result['failures']} failures, {result['errors']} errors, {result['seconds']} s"
    )
