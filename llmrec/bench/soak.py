"""Soak benchmark (a command, not a test): the HTTP app under mixed traffic for minutes on end.

The capacity is measured first (closed loop, 4 callers, the read mixes of `bench.serve`); then the
traffic of `bench.traffic` (recommendations, events, item upserts) runs open-loop at a fraction of it
for `minutes`, from a second process. It reports errors and latency percentiles minute by minute,
the resident memory of every replica process at the start and the end, and whether every
acknowledged write is in the store.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from llmrec.bench.serve import drive_http, request_mix
from llmrec.bench.traffic import Traffic, TrafficSpec, check_acknowledged, window
from llmrec.data.store import Store


def replica_memory() -> dict[str, float]:
    """Resident MB of every Ray Serve replica process on this machine, by its process title
    (`ray::ServeReplica:<app>:<deployment>...`), numbered where a deployment has several."""
    found: dict[str, float] = {}
    for process in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        title = " ".join(process.info["cmdline"] or [])
        if not title.startswith("ray::ServeReplica:") or process.info["memory_info"] is None:
            continue
        name = title.removeprefix("ray::ServeReplica:").split(".")[0].split()[0]
        key, n = name, 1
        while key in found:
            n += 1
            key = f"{name}#{n}"
        found[key] = round(process.info["memory_info"].rss / 2**20, 1)
    return dict(sorted(found.items()))


def soak(
    url: str, users: list[str], store_url: str, minutes: float = 10.0, fraction: float = 0.5, client_key: str | None = None, admin_key: str | None = None,
    memory: Callable[[], dict[str, float]] = replica_memory, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Capacity, then `fraction` of it for `minutes` of mixed traffic; per-minute windows and replica memory."""
    reads = [b for pair in zip(request_mix("structured", 100, users), request_mix("free-text", 100, users)) for b in pair]
    drive_http(url, reads[:10], 1)  # warm-up
    capacity = drive_http(url, reads[:120], 4)["throughput_rps"]
    rate = round(fraction * capacity, 2)
    log(f"capacity {capacity} req/s; soaking at {rate} req/s for {minutes:g} min ...")
    before = memory()
    run_id = f"soak-{uuid.uuid4().hex[:8]}"
    traffic = Traffic(TrafficSpec(url, rate, run_id, users, client_key, admin_key), Path(tempfile.mkdtemp(prefix="llmrec-soak-")) / "sent.jsonl")
    started = time.time()
    time.sleep(minutes * 60)
    sent = traffic.stop()
    after = memory()
    minutes_rows = []
    for m in range(int(round(minutes))):
        row = window(sent, started + 60 * m, started + 60 * (m + 1))
        minutes_rows.append({"minute": m + 1, **row})
    store = Store.open(store_url)
    try:
        durable = check_acknowledged(store, sent)
    finally:
        store.close()
    growth = {name: round(100 * (after[name] - mb) / mb, 1) for name, mb in before.items() if name in after and mb}
    return {
        "capacity_rps": capacity, "rate_rps": rate, "minutes": minutes, "total": window(sent, started, time.time() + 60), "per_minute": minutes_rows,
        "memory_mb_start": before, "memory_mb_end": after, "memory_growth_pct": growth, "durability": durable,
    }


def format_result(result: dict[str, Any]) -> str:
    total, durable = result["total"], result["durability"]
    lines = [
        f"capacity {result['capacity_rps']} req/s (closed loop, 4 callers, reads); soak at {result['rate_rps']} req/s for {result['minutes']:g} min "
        "(6 recommendations, 3 events, 1 item upsert in 10)",
        f"all: {total['sent']} sent, {total['ok']} ok, {total['failed']} failed {total['failed_by_status'] or ''}; "
        f"p50 {total.get('p50_ms')} ms, p95 {total.get('p95_ms')} ms, p99 {total.get('p99_ms')} ms",
        "",
        "| minute | sent | ok | failed | p50 / p95 / p99 ms |",
        "|---|---|---|---|---|",
        *(f"| {r['minute']} | {r['sent']} | {r['ok']} | {r['failed']} | {r.get('p50_ms', '-')} / {r.get('p95_ms', '-')} / {r.get('p99_ms', '-')} |" for r in result["per_minute"]),
        "",
        "| replica process | RSS MB at start | at end | growth |",
        "|---|---|---|---|",
        *(
            f"| {name} | {mb} | {result['memory_mb_end'].get(name, '-')} | {result['memory_growth_pct'].get(name, '-')}% |"
            for name, mb in result["memory_mb_start"].items()
        ),
        "",
        f"acknowledged writes: {durable['acknowledged_events']} events, {durable['acknowledged_items']} items; lost events {len(durable['lost_events'])}, "
        f"duplicated events {len(durable['duplicated_events'])}, lost items {len(durable['lost_items'])}",
    ]
    return "\n".join(lines)
