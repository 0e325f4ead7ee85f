"""The first start, timed: `make run`'s three steps in a fresh LLMREC_HOME, then the first answers
over HTTP.

    llmrec bench first-start [--home DIR] [--port N]

The steps run as `make run` runs them, each a subprocess of this environment's `llmrec`:
`data prepare demo`, `models prepare <the local profile's intent model>`, and `serve --port N`
until `/readyz` answers 200. Then it sends free-text requests (each new to the intent cache), the
first of them again (a cache hit) and a structured request by user id, records each latency and
the first answer, and stops the server with SIGINT, as Ctrl-C does. Downloads come from the
registry through pip's cache, which lives outside LLMREC_HOME: a machine that never fetched the
wheels also pays for the download.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 1200.0
FREE_TEXT = (
    "funny animated movie for kids",
    "我想看一部吓人的鬼片",
    "a thriller like Se7en but from the 90s",
    "book me a hotel room in Rome for two nights",
    "slow acoustic songs for a rainy evening",
)
STRUCTURED = {"user_id": "1", "k": 10}


def _llmrec() -> str:
    beside = Path(sys.executable).with_name("llmrec")
    return str(beside) if beside.is_file() else "llmrec"


def _timed(command: list[str], environ: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=environ, check=True, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - started, 1)


def _post(url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    return round(time.perf_counter() - started, 3), answer


def first_start(home: Path | None = None, port: int = 8000) -> dict[str, Any]:
    """Each step's seconds, the requests' latencies and the first answer."""
    from llmrec.config import load_config
    from llmrec.serving.http import wait_until_ready

    fresh = home is None
    home = Path(tempfile.mkdtemp(prefix="llmrec-first-start-")) if home is None else home
    if home.is_dir() and any(home.iterdir()):
        raise ValueError(f"{home} is not empty: the first start needs a fresh LLMREC_HOME")
    environ = {**os.environ, "LLMREC_HOME": str(home)}
    model = load_config("local", environ=environ).intent.model
    llmrec, url = _llmrec(), f"http://127.0.0.1:{port}"
    steps = {
        "data prepare demo": _timed([llmrec, "data", "prepare", "demo"], environ),
        f"models prepare {model}": _timed([llmrec, "models", "prepare", model], environ),
    }
    started = time.perf_counter()
    server = subprocess.Popen([llmrec, "serve", "--port", str(port)], env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(url, READY_TIMEOUT_S, alive=lambda: server.poll() is None)
        steps["serve until /readyz"] = round(time.perf_counter() - started, 1)
        answers = [(query, *_post(f"{url}/v1/recommend", {"query": query, "k": 3})) for query in FREE_TEXT]
        cached = _post(f"{url}/v1/recommend", {"query": FREE_TEXT[0], "k": 3})[0]
        structured = _post(f"{url}/v1/recommend", STRUCTURED)[0]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
        if fresh:
            shutil.rmtree(home, ignore_errors=True)
    return {
        "steps_s": steps,
        "total_s": round(sum(steps.values()), 1),
        "free_text_s": {query: seconds for query, seconds, _ in answers},
        "cached_s": cached,
        "structured_s": structured,
        "answers": {query: {"scene": a["scene"], "scene_source": a["scene_source"], "items": [i["title"] for i in a["items"]]} for query, _, a in answers},
        "first_answer": answers[0][2],
    }


def format_result(result: dict[str, Any]) -> str:
    lines = [f"{step}: {seconds:.1f} s" for step, seconds in result["steps_s"].items()]
    lines.append(f"first start in all: {result['total_s']:.1f} s")
    for query, seconds in result["free_text_s"].items():
        answer = result["answers"][query]
        lines.append(f"{seconds:.3f} s  {query!r} → {answer['scene']} ({answer['scene_source']}): {'; '.join(answer['items'])}")
    lines.append(f"{result['cached_s']:.3f} s  the first query again (cached intent)")
    lines.append(f"{result['structured_s']:.3f} s  {json.dumps(STRUCTURED)}")
    return "\n".join(lines)
