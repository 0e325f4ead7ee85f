"""Errors a caller can act on. Each message says what was wrong and what is accepted."""


class LLMRecError(Exception):
    """Base class for every error llmrec raises on purpose; `status` is its HTTP status."""

    status = 500


class RequestError(LLMRecError, ValueError):
    """The request cannot be answered as given (maps to HTTP 4xx)."""

    status = 400


class NotFoundError(RequestError, KeyError):
    """A named thing (item, user, scene) does not exist."""

    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AuthError(RequestError):
    """An admin call without the right API key."""

    status = 401


class AdminDisabledError(RequestError):
    """An admin call to a server that has no API key configured: nobody may write."""

    status = 403


class AssetError(LLMRecError, RuntimeError):
    """A model or data set is missing or corrupt; the message names the command that provides it."""


def describe_validation_error(error: Exception) -> str:
    """A pydantic ValidationError as one line per field: 'k: Input should be greater than or equal to 1'."""
    details = getattr(error, "errors", None)
    if details is None:
        return str(error)
    lines = []
    for detail in details():
        where = ".".join(str(part) for part in detail.get("loc", ())) or "request"
        lines.append(f"{where}: {detail.get('msg', 'invalid')}")
    return "; ".join(lines)


class UnavailableError(LLMRecError, RuntimeError):
    """A stage the answer cannot do without failed or ran out of time (HTTP 503: try again)."""

    status = 503


def root_cause(error: BaseException) -> BaseException:
    """The error a remote stage raised, when a transport (Ray) wrapped it in its own."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error
