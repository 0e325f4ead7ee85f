"""Adversarial benchmark (a command; a reduced run is a test): hostile requests beside an ordinary client.

One client sends ordinary requests one after another, first alone (its usual latency), then while a
second client keeps sending the largest and most awkward requests the API accepts or must refuse:
a filter with 20,000 values (over its caps), filters at every cap that match nothing, a query of 2,000
characters that normalise to 4,000 digits, a history of 500 items, a shortlist of 1,000 items. Each
answer must be a 200 or a 4xx within the deadline, never a 5xx or a hang, and the ordinary client's
latency should stay within 2x of its usual.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

ORDINARY = [{"query": "a funny animated movie for kids", "k": 10}, {"user_id": "1", "k": 10}, {"history": ["Toy Story (1995)", "Aladdin (1992)"], "k": 10}]


def hostile_bodies(movie_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The hostile requests, by name; `movie_ids` are the catalog's movies (for histories and shortlists)."""
    at_caps = {f"key{k}": [f"value {k}-{v}" for v in range(100)] for k in range(20)}
    return {
        "20,000 filter values": {"query": "x", "scene": "movie", "filters": {"attributes": {"genres": [f"g{i}" for i in range(20_000)]}}},
        "filters at the caps, matching nothing": {"query": "a film", "scene": "movie", "filters": {"attributes": at_caps, "exclude_attributes": at_caps}},
        "2,000 circled twenties": {"query": "⑳" * 2000, "k": 10},
        "history of 500 items": {"history": movie_ids[:500], "k": 100},
        "shortlist of 1,000 items": {"query": "a thriller", "scene": "movie", "k": 100, "filters": {"item_ids": movie_ids[:1000]}},
    }


def _post(client: Any, body: dict[str, Any]) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        status = client.post("/v1/recommend", json=body).status_code
    except Exception:  # no answer within the client's timeout counts as a failure (status 0)
        status = 0
    return status, time.perf_counter() - started


def adversarial(url: str, movie_ids: list[str], seconds: float = 30.0, key: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
    """The ordinary client alone, then beside the hostile one for `seconds`."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    hostile = hostile_bodies(movie_ids)
    with httpx.Client(base_url=url, timeout=timeout_s, headers=headers) as ordinary_client, httpx.Client(base_url=url, timeout=timeout_s, headers=headers) as hostile_client:
        for body in ORDINARY:  # warm-up
            _post(ordinary_client, body)
        alone = [_post(ordinary_client, ORDINARY[n % len(ORDINARY)]) for n in range(3 * len(ORDINARY) * 3)]
        answers: dict[str, list[tuple[int, float]]] = {name: [] for name in hostile}
        stop = threading.Event()

        def attack() -> None:
            while not stop.is_set():
                for name, body in hostile.items():
                    answers[name].append(_post(hostile_client, body))

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        beside, until, n = [], time.monotonic() + seconds, 0
        while time.monotonic() < until:
            beside.append(_post(ordinary_client, ORDINARY[n % len(ORDINARY)]))
            n += 1
        stop.set()
        attacker.join(timeout_s + 5)

    def summary(results: list[tuple[int, float]]) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for status, _ in results:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        seconds_ = [s for _, s in results]
        return {"sent": len(results), "statuses": statuses, "p50_ms": round(1000 * statistics.median(seconds_), 1), "max_ms": round(1000 * max(seconds_), 1)}

    alone_row, beside_row = summary(alone), summary(beside)
    return {
        "seconds": seconds,
        "ordinary_alone": alone_row,
        "ordinary_beside": beside_row,
        "p50_ratio": round(beside_row["p50_ms"] / alone_row["p50_ms"], 2),
        "hostile": {name: summary(results) for name, results in answers.items() if results},
    }


def format_result(result: dict[str, Any]) -> str:
    alone, beside = result["ordinary_alone"], result["ordinary_beside"]
    lines = [
        f"ordinary client alone: {alone['sent']} requests, p50 {alone['p50_ms']} ms, max {alone['max_ms']} ms, statuses {alone['statuses']}",
        f"beside the hostile client for {result['seconds']:g} s: {beside['sent']} requests, p50 {beside['p50_ms']} ms ({result['p50_ratio']}x), "
        f"max {beside['max_ms']} ms, statuses {beside['statuses']}",
        "",
        "| hostile request | sent | statuses | p50 ms | max ms |",
        "|---|---|---|---|---|",
        *(f"| {name} | {r['sent']} | {r['statuses']} | {r['p50_ms']} | {r['max_ms']} |" for name, r in result["hostile"].items()),
    ]
    return "\n".join(lines)
