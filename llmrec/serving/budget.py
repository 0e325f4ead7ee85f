"""The clock of one request: each stage runs within its budget, and a failed stage degrades or ends it.

A stage gets the smaller of its own budget (`deadline.<stage>_ms`) and what is left of the request's;
one that fails or runs out of time is replaced by its fallback where there is a sensible substitute
(and the answer says so), and otherwise ends the request with `UnavailableError` (HTTP 503), never
a hang. Client errors (`RequestError`) and a callee's own `UnavailableError` pass straight through.
The ingress and the Ranker each keep one clock: the Ranker's starts with what the ingress has left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llmrec.config import DeadlineConfig
from llmrec.errors import RequestError, UnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

# stage name, seconds, outcome ("ok", "rejected", "timeout", "error"): metrics hook for the caller
Observer = Callable[[str, float, str], None]
# Whether a failed stage call may be sent again: under Serve, a replica (or its node) that died; the
# stage calls are reads, so a second try on another replica cannot apply anything twice.
Retryable = Callable[[BaseException], bool]


async def call_within(name: str, call: Callable[[], Awaitable[T]], budget_s: float, retryable: Retryable | None = None) -> T:
    """`call()` within `budget_s` seconds; sent once more, within what is left, when it failed in a way
    `retryable` says another replica can fix (raises TimeoutError past the budget)."""
    start = time.perf_counter()
    try:
        return await asyncio.wait_for(call(), budget_s)
    except Exception as error:
        left = budget_s - (time.perf_counter() - start)
        if retryable is None or not retryable(error) or left <= 0:
            raise
        log.warning("%s: %s; trying once more on another replica", name, type(error).__name__)
        return await asyncio.wait_for(call(), left)


class RequestClock:
    """The deadline, stage timings and degradations of one request (or of its part in one stage)."""

    def __init__(self, deadline: DeadlineConfig, observe: Observer | None = None, total_s: float | None = None, retryable: Retryable | None = None) -> None:
        self.deadline = deadline
        self.retryable = retryable
        self.total_s = deadline.total_ms / 1000 if total_s is None else total_s
        self.observe = observe
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.degraded: list[str] = []

    def remaining(self) -> float:
        return self.total_s - (time.perf_counter() - self.started)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)

    async def stage(self, name: str, call: Callable[[], Awaitable[T]], fallback: Callable[[], T] | None = None, instead: str = "") -> T:
        """Run one stage within its budget; on failure use `fallback` (noting `instead`) or raise UnavailableError."""
        own = getattr(self.deadline, f"{name}_ms", None)
        budget = self.remaining() if own is None else min(own / 1000, self.remaining())
        start = time.perf_counter()
        outcome = "ok"
        try:
            if budget <= 0:
                raise TimeoutError
            return await call_within(f"stage {name}", call, budget, self.retryable)
        except RequestError:
            outcome = "rejected"
            raise
        except UnavailableError:  # a callee already said why it cannot answer
            outcome = "error"
            raise
        except Exception as error:  # a stage is remote code: any failure is its failure, not the client's
            outcome = "timeout" if isinstance(error, TimeoutError) else "error"
            why = f"gave no answer within {budget * 1000:.0f} ms" if outcome == "timeout" else f"failed ({type(error).__name__}: {error})"
            log.warning("stage %s %s", name, why)
            if fallback is None:
                raise UnavailableError(f"the {name} stage {why}; the request cannot be answered without it, try again") from error
            self.degraded.append(f"{name}: {why}; {instead}")
            return fallback()
        finally:
            elapsed = time.perf_counter() - start
            self.timings[name] = round(elapsed * 1000, 2)
            if self.observe is not None:
                self.observe(name, elapsed, outcome)
