"""Mixed traffic for the fault and soak benchmarks: reads and writes at a steady rate, from a second process.

Requests arrive open-loop at `rate` per second whatever the app answers (a slow or failing app does not
slow the traffic down), in a fixed mix: recommendations (structured and free text, the mixes of
`bench.serve`), events (each with an `event_id`, so the store can be checked for exactly one copy of
every acknowledged one) and item upserts. Every request becomes a `Sent` record: when it started, what
it was, the status (0 for no answer within `timeout_s`) and its latency. `Traffic` runs the generator
in its own process, as a client would, so the app under test never shares its event loop.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.bench.serve import request_mix
from llmrec.data.store import Store

# Of every 10 requests: 6 recommendations, 3 events, 1 item upsert.
MIX = ["recommend"] * 6 + ["event"] * 3 + ["item"]
EVENT_ITEMS = ["Toy Story (1995)", "Jaws (1975)", "Alien (1979)", "Fargo (1996)", "Heat (1995)", "Casablanca (1942)"]
WRITE_USERS = 50  # events go to this many users of the run, so their histories grow


@dataclass
class Sent:
    started: float  # Unix seconds
    op: str  # recommend, event, item
    status: int  # HTTP status; 0 when no answer came within the timeout (or the connection failed)
    ms: float
    key: str = ""  # the event_id or item_id a write carried
    error: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.ms / 1000


@dataclass
class TrafficSpec:
    url: str
    rate: float  # requests per second
    run_id: str  # prefix of every id this traffic writes
    users: list[str]  # known users for structured requests
    client_key: str | None = None
    admin_key: str | None = None
    timeout_s: float = 10.0


def _bodies(spec: TrafficSpec) -> Iterable[tuple[str, str, str, dict[str, Any], str]]:
    """(op, method, path, body, key) forever, deterministic for the run."""
    reads = [b for pair in zip(request_mix("structured", 200, spec.users), request_mix("free-text", 200, spec.users)) for b in pair]
    n = 0
    while True:
        op = MIX[n % len(MIX)]
        if op == "recommend":
            yield op, "POST", "/v1/recommend", reads[n % len(reads)], ""
        elif op == "event":
            key = f"{spec.run_id}-e{n}"
            body = {"user_id": f"{spec.run_id}-u{n % WRITE_USERS}", "item_id": EVENT_ITEMS[n % len(EVENT_ITEMS)], "kind": "like", "event_id": key}
            yield op, "POST", "/v1/events", body, key
        else:
            key = f"{spec.run_id}-i{n}"
            body = {"item_id": key, "scene": "music", "title": f"Fault Tolerance Waltz {n}", "text": "A slow waltz for the night shift that keeps a system running."}
            yield op, "PUT", "/v1/items", body, key
        n += 1


async def _drive(spec: TrafficSpec, running: Callable[[], bool]) -> list[Sent]:
    import httpx

    client_headers = {"Authorization": f"Bearer {spec.client_key}"} if spec.client_key else {}
    admin_headers = {"Authorization": f"Bearer {spec.admin_key}"} if spec.admin_key else {}
    sent: list[Sent] = []

    async def one(client: httpx.AsyncClient, op: str, method: str, path: str, body: dict[str, Any], key: str) -> None:
        started, clock = time.time(), time.perf_counter()
        status, error = 0, ""
        try:
            response = await client.request(method, path, json=body, headers=admin_headers if op == "item" else client_headers)
            status = response.status_code
            if status != 200:
                error = response.text[:300]
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        sent.append(Sent(started, op, status, round((time.perf_counter() - clock) * 1000, 1), key, error))

    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=spec.url, timeout=spec.timeout_s, limits=limits) as client:
        tasks: set[asyncio.Task] = set()
        bodies = _bodies(spec)
        begun, n = time.perf_counter(), 0
        while running():
            due = int((time.perf_counter() - begun) * spec.rate) + 1
            while n < due:
                task = asyncio.create_task(one(client, *next(bodies)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(max(0.0, n / spec.rate - (time.perf_counter() - begun)))
        if tasks:
            await asyncio.gather(*tasks)
    return sorted(sent, key=lambda s: s.started)


def _run(spec: TrafficSpec, stop: Any, out: str) -> None:
    records = asyncio.run(_drive(spec, lambda: not stop.is_set()))
    Path(out).write_text("\n".join(json.dumps(asdict(r)) for r in records))


class Traffic:
    """The traffic in a second process: `Traffic(spec, path)` starts it, `stop()` ends it and returns what was sent."""

    def __init__(self, spec: TrafficSpec, path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.path = path
        self._stop = context.Event()
        self._process = context.Process(target=_run, args=(spec, self._stop, str(path)), name="llmrec-traffic", daemon=True)
        self._process.start()

    def stop(self, timeout_s: float = 60.0) -> list[Sent]:
        self._stop.set()
        self._process.join(timeout_s)
        if self._process.exitcode != 0:
            raise RuntimeError(f"the traffic process ended with exit code {self._process.exitcode}")
        return [Sent(**json.loads(line)) for line in self.path.read_text().splitlines() if line]


def window(sent: list[Sent], start: float, end: float) -> dict[str, Any]:
    """Counts and latencies of the requests that ended in [start, end) (Unix seconds): a request cut off
    by a fault counts where the fault happened."""
    inside = [s for s in sent if start <= s.ended < end]
    ok = [s.ms for s in inside if s.status == 200]
    failed = Counter(str(s.status) for s in inside if s.status != 200)
    row: dict[str, Any] = {"sent": len(inside), "ok": len(ok), "failed": sum(failed.values()), "failed_by_status": dict(failed)}
    row["failed_pct"] = round(100 * row["failed"] / len(inside), 3) if inside else 0.0
    if ok:
        row.update(p50_ms=round(float(np.percentile(ok, 50)), 1), p95_ms=round(float(np.percentile(ok, 95)), 1), p99_ms=round(float(np.percentile(ok, 99)), 1))
    return row


def failure_counts(sent: list[Sent]) -> dict[str, int]:
    """How often each kind of failure happened: "op status: message" (request ids left out)."""
    def message(s: Sent) -> str:
        try:
            return str(json.loads(s.error)["error"])[:160]
        except (ValueError, KeyError, TypeError):
            return s.error[:160]

    return dict(Counter(f"{s.op} {s.status}: {message(s)}" for s in sent if s.status != 200).most_common(20))


def first_success_after(sent: list[Sent], moment: float, op: str | None = None) -> float | None:
    """Seconds from `moment` until the first request started after it (of `op`, if given) succeeded."""
    times = [s.started for s in sent if s.started >= moment and s.status == 200 and (op is None or s.op == op)]
    return round(min(times) - moment, 2) if times else None


def check_acknowledged(store: Store, sent: list[Sent]) -> dict[str, Any]:
    """Every acknowledged write is in the store, each event exactly once: the durability verdict."""
    events = Counter(e.event_id for e in store.events() if e.event_id)
    items = {c.item_id for c in store.item_changes() if c.op == "upsert"}
    acked_events = [s.key for s in sent if s.op == "event" and s.status == 200]
    acked_items = [s.key for s in sent if s.op == "item" and s.status == 200]
    return {
        "acknowledged_events": len(acked_events),
        "acknowledged_items": len(acked_items),
        "lost_events": sorted(k for k in acked_events if events[k] == 0),
        "duplicated_events": sorted(k for k in acked_events if events[k] > 1),
        "lost_items": sorted(k for k in acked_items if k not in items),
    }
