"""A stage object behind the interface of a Ray Serve `DeploymentHandle`: `await stage.method.remote(...)`.

The pipeline calls its stages only this way, so each stage call is written once (the stage object's
method) and runs unchanged in one process (`LocalHandle`) and under Serve (the deployment's handle,
whose deployment class subclasses the stage object). In process, a plain method runs in a worker
thread and an async one on the loop, so stage budgets hold as they do across processes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


class LocalMethod:
    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method

    def remote(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if inspect.iscoroutinefunction(self.method):
            return self.method(*args, **kwargs)
        return asyncio.to_thread(self.method, *args, **kwargs)


class LocalHandle:
    """`LocalHandle(obj).name.remote(*args)` awaits `obj.name(*args)`, as a deployment handle would."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> LocalMethod:
        return LocalMethod(getattr(self.target, name))
