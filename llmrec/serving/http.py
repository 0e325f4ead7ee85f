"""HTTP edge of the service (FastAPI/Starlette, no Ray): client and admin keys, body limits and
parsing, request ids, and errors that say what to fix, all as `{"error", "request_id"}` (ErrorBody).
The Serve ingress (deployments/ingress.py) installs these on its app.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmrec.errors import (
    AdminDisabledError,
    AuthError,
    LLMRecError,
    RequestError,
    UnavailableError,
    describe_validation_error,
    root_cause,
)

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "x-request-id"
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_RETRY_AFTER_S = 1
M = TypeVar("M", bound=BaseModel)

# route, status, seconds: metrics hook of the caller
RequestObserver = Callable[[str, int, float], None]


class ErrorBody(BaseModel):
    """Every error the service answers: what to fix, and the request id to quote."""

    error: str = Field(description="What was wrong and what is accepted instead.")
    request_id: str | None = Field(None, description="The request's id (the client's X-Request-ID, else a new one); also in the x-request-id header.")


class KeyNotAllowedError(RequestError):
    """A valid key on a route it does not open (a client key on an item write)."""

    status = 403


class UnsupportedMediaTypeError(RequestError):
    """A request body that is not JSON."""

    status = 415


class OverloadedError(UnavailableError):
    """A stage refused the call: its queue is full (HTTP 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# OpenAPI: what each error status means on this API; `error_responses(...)` puts them on a route.
ERROR_DESCRIPTIONS = {
    400: "The request cannot be answered as given (e.g. `k` above `max_k`).",
    401: "A key is needed and was missing or wrong: send `Authorization: Bearer KEY`.",
    403: "The key is valid but does not open this route (item writes need the admin key), or the server has no admin key.",
    404: "An unknown scene, user or item.",
    413: "The body is larger than `server.max_body_bytes`.",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    422: "Malformed JSON or a wrong field; the message names the field.",
    503: "Overloaded (a queue is full) or a stage the answer needs is unavailable: retry after `Retry-After` seconds. When Serve itself "
    "sheds the request (the ingress queue is full) the body is Ray Serve's plain text, not JSON.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for these error statuses, each with the ErrorBody schema."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        if status == 503:
            response["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True, "schema": {"type": "integer", "minimum": 0}}}
            response["content"] = {"application/json": {}, "text/plain": {"schema": {"type": "string"}}}  # text: the proxy's own answer when it sheds load
        responses[status] = response
    return responses


Credentials = HTTPAuthorizationCredentials | str | None


def _token(authorization: Credentials) -> str | None:
    """The bearer token of an Authorization header (or FastAPI's parsed credentials), else None."""
    if isinstance(authorization, HTTPAuthorizationCredentials):
        return authorization.credentials.strip() or None
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _matches(token: str | None, digests: Iterable[bytes]) -> bool:
    """Constant time in the token and over every key (no early exit; digests hide the keys' lengths)."""
    given = _digest(token or "")
    found = False
    for digest in digests:
        found |= hmac.compare_digest(given, digest)
    return found and token is not None


def parse_keys(text: str) -> list[str]:
    """Keys separated by commas or newlines; blank entries and `#` comment lines are ignored."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("#")]
    return [key.strip() for line in lines for key in line.split(",") if key.strip()]


class AdminKey:
    """The admin API key, compared in constant time; never logged, never echoed."""

    def __init__(self, key: str | None, env_name: str) -> None:
        self._digests = [_digest(key)] if key else []
        self.env_name = env_name

    @classmethod
    def from_env(cls, env_name: str) -> AdminKey:
        return cls(os.environ.get(env_name) or None, env_name)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def matches(self, token: str | None) -> bool:
        return _matches(token, self._digests)

    def presented_by(self, authorization: Credentials) -> bool:
        """Whether the request carries the admin key (which may see any user's stored history)."""
        return self.enabled and self.matches(_token(authorization))

    def check(self, authorization: Credentials, clients: ClientKeys | None = None) -> None:
        if not self.enabled:
            raise AdminDisabledError(f"admin routes are disabled: the server has no API key; set {self.env_name} where it runs")
        token = _token(authorization)
        if token is None:
            raise AuthError("admin route: send the API key as 'Authorization: Bearer KEY'")
        if not self.matches(token):
            if clients is not None and clients.matches(token):
                raise KeyNotAllowedError("admin route: this is a client key; item writes need the admin API key")
            raise AuthError("admin route: the API key is wrong")


class ClientKeys:
    """The keys of client applications, for every route but health, item writes aside (the admin key opens
    those, and client routes too). Several keys are accepted at once: rotate one by adding the new key,
    moving clients to it, then removing the old. With no keys configured the client routes are open.
    Compared in constant time over all keys; never logged, never echoed.

    Keys come from the environment variable `env_name` (comma-separated) and from `path` (one per line
    or comma-separated, e.g. a mounted Kubernetes Secret), which is re-read when it changes."""

    RELOAD_EVERY_S = 5.0

    def __init__(self, keys: Iterable[str] = (), admin: AdminKey | None = None, env_name: str = "LLMREC_CLIENT_KEYS", path: str | Path | None = None) -> None:
        self._fixed = [_digest(k) for k in keys]
        self.admin = admin
        self.env_name = env_name
        self.path = Path(path) if path else None
        self._from_file: list[bytes] = []
        self._file_stamp: tuple[int, int] | None = None
        self._checked_at = 0.0
        if self.path is not None:
            self._reload(force=True)

    @classmethod
    def load(cls, env_name: str, path: str | None, admin: AdminKey | None = None, environ: dict[str, str] | None = None) -> ClientKeys:
        env = os.environ if environ is None else environ
        return cls(parse_keys(env.get(env_name, "")), admin, env_name, path)

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or (not force and now - self._checked_at < self.RELOAD_EVERY_S):
            return
        self._checked_at = now
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._file_stamp:
                self._from_file = [_digest(k) for k in parse_keys(self.path.read_text())]
                self._file_stamp = stamp
        except OSError as error:
            if force:
                raise FileNotFoundError(f"client keys file {self.path}: {error.strerror}; create it, or unset server.client_keys_file") from None
            log.warning("client keys file %s unreadable (%s); keeping the keys read before", self.path, error.strerror)

    def __len__(self) -> int:
        self._reload()
        return len(self._fixed) + len(self._from_file)

    @property
    def enabled(self) -> bool:
        return len(self) > 0

    def sources(self) -> str:
        return " and ".join([self.env_name, *([str(self.path)] if self.path else [])])

    def matches(self, token: str | None) -> bool:
        self._reload()
        return _matches(token, [*self._fixed, *self._from_file])

    def check(self, authorization: Credentials) -> None:
        if not self.enabled:
            return
        token = _token(authorization)
        if token is None:
            raise AuthError("this route needs a client key: send it as 'Authorization: Bearer KEY'")
        if not (self.matches(token) or (self.admin is not None and self.admin.matches(token))):
            raise AuthError("the client key is wrong, or it was revoked")

    def describe(self) -> str:
        """One line for the start-up log (how many keys, never which)."""
        if not self.enabled:
            return f"client routes are OPEN: no client keys configured (set {self.env_name} or server.client_keys_file to require keys)"
        return f"client routes need one of {len(self)} client key(s) (from {self.sources()}) or the admin key"


def bearer_scheme(name: str, description: str) -> HTTPBearer:
    """An OpenAPI bearer security scheme that leaves the checking (and its error messages) to the route."""
    return HTTPBearer(auto_error=False, scheme_name=name, description=description)


# ---- request bodies: JSON only, validated strictly (no "5" for 5), errors naming the field ----------

_JSON: TypeAdapter[Any] = TypeAdapter(Any)


def _json_error(reason: str) -> RequestValidationError:
    return RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "ctx": {"error": reason}}])


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


async def read_json(request: Request) -> Any:
    """The body as JSON: 415 for another content type, 422 for malformed JSON (NaN and Infinity included)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaTypeError(f"the body must be JSON: send 'Content-Type: application/json' (got {content_type[:100]!r})")
    raw = await request.body()
    if not raw.strip():
        raise _json_error("the body is empty")
    try:
        data = _JSON.validate_json(raw)
    except ValidationError as error:
        raise _json_error(str((error.errors()[0].get("ctx") or {}).get("error", "invalid JSON"))) from None
    if not _finite(data):
        raise _json_error("NaN and Infinity are not JSON numbers")
    return data


@functools.cache
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def _too_long(schema: dict[str, Any], defs: dict[str, Any], value: Any, loc: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Raw strings over the documented maxLength. The models strip whitespace before they check lengths, so
    without this a 2,000-character limit would take 2,000 characters plus any padding, unlike the schema."""
    while "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
    branches = [defs.get(b["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in b else b for b in branches]
    if isinstance(value, str):
        limits = [b.get("maxLength") for b in branches if b.get("type") == "string"]
        if limits and None not in limits and len(value) > max(limits):
            return [{"type": "string_too_long", "loc": loc, "msg": f"String should have at most {max(limits)} characters"}]
        return []
    if isinstance(value, dict):
        objects = [b for b in branches if b.get("type") == "object"]
        if len(objects) != 1:
            return []
        properties, rest = objects[0].get("properties", {}), objects[0].get("additionalProperties")
        errors = []
        for name, item in value.items():
            sub = properties.get(name, rest if isinstance(rest, dict) else None)
            if sub is not None:
                errors += _too_long(sub, defs, item, (*loc, name))
        return errors
    if isinstance(value, list):
        arrays = [b for b in branches if b.get("type") == "array" and isinstance(b.get("items"), dict)]
        if len(arrays) != 1:
            return []
        return [e for n, item in enumerate(value) for e in _too_long(arrays[0]["items"], defs, item, (*loc, n))]
    return []


def _checked(model: type[M], data: Any, loc: tuple[Any, ...]) -> M:
    try:
        value = model.model_validate(data, strict=True)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": (*loc, *e["loc"])} for e in error.errors()]) from None
    schema = _json_schema(model)
    errors = _too_long(schema, schema.get("$defs", {}), data, loc)
    if errors:
        raise RequestValidationError(errors)
    return value


def validate_body(model: type[M], data: Any) -> M:
    """`model` from a JSON body, strictly and as documented; errors name the field as `body.FIELD`."""
    return _checked(model, data, ("body",))


def validate_batch(batch: type[M], one: type[BaseModel], key: str, data: Any) -> M:
    """`{KEY: [...]}` or a single object, strictly; errors name the field (`body.items.0.scene: ...`)."""
    if not isinstance(data, dict):
        raise RequestValidationError([{"type": "dict_type", "loc": ("body",), "msg": f"send a JSON object: one item, or {{\"{key}\": [...]}}"}])
    if key in data:
        return _checked(batch, data, ("body",))
    return batch.model_validate({key: [_checked(one, data, ("body",))]}, strict=True)


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


def _retry_after(request: Request, error: BaseException | None = None) -> dict[str, str]:
    seconds = getattr(error, "retry_after_s", None)
    if seconds is None:
        seconds = getattr(request.app.state, "retry_after_s", DEFAULT_RETRY_AFTER_S)
    return {"Retry-After": str(max(0, math.ceil(seconds)))}


def _framework_message(request: Request, error: StarletteHTTPException) -> str:
    """Starlette's and FastAPI's own errors (no route, wrong method, unreadable body) in words that say what to fix."""
    path = request.url.path[:200]
    if error.status_code == 400 and error.detail == "There was an error parsing the body":
        return "the body could not be read; send a UTF-8 JSON object with 'Content-Type: application/json'"
    if error.detail != HTTPStatus(error.status_code).phrase:
        return str(error.detail)
    if error.status_code == 404:
        return f"no route {request.method} {path}; the API is under /v1 (see /docs)"
    if error.status_code == 405:
        allowed = {k.lower(): v for k, v in (error.headers or {}).items()}.get("allow") or "see /docs"
        return f"{request.method} is not allowed on {path}; allowed: {allowed}"
    return str(error.detail)


def install_error_handlers(app: FastAPI, overloaded: tuple[type[BaseException], ...] = ()) -> None:
    """4xx with a message for anything the client can fix; 503 with Retry-After for a stage that failed or
    a queue that is full (OverloadedError, or `overloaded`: a transport's own errors for that); 500 only
    for bugs. Every error is an ErrorBody, unknown routes and wrong methods included.

    Ray Serve registers its own handlers for its BackPressureError and DeploymentUnavailableError on an
    ingress app after this (plain-text 503s), so the Serve ingress turns those into OverloadedError itself."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, describe_request_error(error), request_id_of(request))

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, error: ValidationError) -> JSONResponse:
        return _error(422, f"body: {describe_validation_error(error)}", request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def framework(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = {k: v for k, v in (error.headers or {}).items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        if error.status_code == 503:
            headers = {**_retry_after(request), **headers}
        return _error(error.status_code, _framework_message(request, error), request_id_of(request), headers or None)

    @app.exception_handler(LLMRecError)
    async def known(request: Request, error: LLMRecError) -> JSONResponse:
        cause = root_cause(error)
        status = getattr(cause, "status", error.status)
        headers = None
        if isinstance(cause, AuthError):
            headers = {"WWW-Authenticate": "Bearer"}
        elif status == 503:
            headers = _retry_after(request, cause)
        return _error(status, str(cause), request_id_of(request), headers)

    async def shed(request: Request, error: BaseException) -> JSONResponse:
        cause = root_cause(error)
        message = f"the service is overloaded ({cause}); retry after the Retry-After seconds"
        return _error(503, message, request_id_of(request), _retry_after(request, cause))

    for kind in overloaded:
        app.add_exception_handler(kind, shed)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        cause = root_cause(error)
        if isinstance(cause, LLMRecError):  # a remote stage's error whose wrapper lost the class
            return await known(request, cause)
        if isinstance(cause, overloaded):
            return await shed(request, cause)
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
            return await self._too_large(limit, scope, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await self._too_large(limit, scope, send)
            more = message.get("more_body", False)
        buffered: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return buffered.pop() if buffered else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(limit: int, scope: Scope, send: Send) -> None:
        request_id = (scope.get("state") or {}).get("request_id")
        body = json.dumps({"error": f"request body over {limit} bytes; send fewer items per call", "request_id": request_id}).encode()
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


SCHEMA_REF = "#/components/schemas/{model}"


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=model.__name__)}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A route's `openapi_extra` for a JSON body the route parses itself (`read_json`, `validate_body`)."""
    return {"requestBody": {"required": True, "description": description, "content": {"application/json": {"schema": schema}}}}


def document_body_models(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add the schemas of bodies the routes parse themselves to the app's OpenAPI document (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            _, definitions = models_json_schema([(m, "validation") for m in models], ref_template=SCHEMA_REF)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in definitions.get("$defs", {}).items():
                schemas.setdefault(name, schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def wait_until_ready(url: str, timeout_s: float, alive: Callable[[], bool] | None = None) -> None:
    """Poll the app's /readyz until it answers 200 (every stage loaded; it also warms the ingress's
    handles). `alive` says whether the process serving it still runs: if not, waiting is pointless."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the server of {url} exited before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not become ready within {timeout_s:.0f} s; see /readyz and the Serve logs")
