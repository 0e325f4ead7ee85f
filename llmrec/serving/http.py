"""HTTP edge of the service (FastAPI/Starlette, no Ray): admin auth, body limits, request ids and
errors that say what to fix. The Serve ingress (deployments/ingress.py) installs these on its app.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmrec.errors import (
    AdminDisabledError,
    AuthError,
    LLMRecError,
    describe_validation_error,
    root_cause,
)

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "x-request-id"
DEFAULT_MAX_BODY_BYTES = 1_000_000

# route, status, seconds: metrics hook of the caller
RequestObserver = Callable[[str, int, float], None]


class AdminKey:
    """The admin API key, compared in constant time; never logged, never echoed."""

    def __init__(self, key: str | None, env_name: str) -> None:
        self._key = key.encode() if key else None
        self.env_name = env_name

    @classmethod
    def from_env(cls, env_name: str) -> AdminKey:
        return cls(os.environ.get(env_name) or None, env_name)

    def check(self, authorization: str | None) -> None:
        if self._key is None:
            raise AdminDisabledError(f"admin routes are disabled: the server has no API key; set {self.env_name} where it runs")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("admin route: send the API key as 'Authorization: Bearer KEY'")
        if not hmac.compare_digest(token.strip().encode(), self._key):
            raise AuthError("admin route: the API key is wrong")


def _error(status: int, message: str, request_id: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "request_id": request_id}, status_code=status, headers=headers)


def describe_request_error(error: RequestValidationError) -> str:
    """One line per problem, e.g. 'body.k: Input should be greater than or equal to 1'."""
    lines = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail.get("loc", ())) or "request"
        if detail.get("type") == "json_invalid":
            reason = (detail.get("ctx") or {}).get("error", "invalid JSON")
            lines.append(f"the body is not valid JSON ({reason}); send a JSON object")
        else:
            lines.append(f"{where}: {detail.get('msg', 'invalid')}")
    return "; ".join(lines)


def install_error_handlers(app: FastAPI) -> None:
    """4xx with a message for anything the client can fix; 503 for a stage that failed; 500 only for bugs."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, describe_request_error(error), request_id_of(request))

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, error: ValidationError) -> JSONResponse:
        return _error(422, f"body: {describe_validation_error(error)}", request_id_of(request))

    @app.exception_handler(LLMRecError)
    async def known(request: Request, error: LLMRecError) -> JSONResponse:
        cause = root_cause(error)
        status = getattr(cause, "status", error.status)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(cause, AuthError) else None
        return _error(status, str(cause), request_id_of(request), headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        cause = root_cause(error)
        if isinstance(cause, LLMRecError):  # a remote stage's error whose wrapper lost the class
            return await known(request, cause)
        log.exception("request %s failed", request_id_of(request))
        return _error(500, "internal error; quote the request id when you report it", request_id_of(request))


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


class BodyLimitMiddleware:
    """413 for bodies over `app.state.max_body_bytes`: by Content-Length up front, else while reading
    (the body is buffered up to the limit, then replayed to the app)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = getattr(scope["app"].state, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._too_large(limit, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await self._too_large(limit, send)
            more = message.get("more_body", False)
        buffered: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return buffered.pop() if buffered else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(limit: int, send: Send) -> None:
        body = json.dumps({"error": f"request body over {limit} bytes; send fewer items per call"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Every request gets an id (the client's X-Request-ID, else a new one) for logs and error bodies
    (Ray Serve's proxy sets the same header on every response); `observe()` gives the metrics hook
    once the server has one. Plain ASGI: no per-request task or body stream, as a decorator middleware has."""

    def __init__(self, app: ASGIApp, observe: Callable[[], RequestObserver | None]) -> None:
        self.app, self.observe = app, observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        scope.setdefault("state", {})["request_id"] = (given or uuid.uuid4().hex)[:100]
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            hook = self.observe()
            if hook is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                hook(route, status, time.perf_counter() - started)
