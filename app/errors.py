"""One error shape for every failure: `{"error": {"type", "message", "run_id"}}`.

No stack trace reaches the client; the message names the fix where there is one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("agent_endpoint")

# Every message is cut past this: a message may quote the request (a violation, a placeholder),
# and a 1 MB body must not make a 16 MB answer or span.
MAX_MESSAGE_CHARS = 4_000


def bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}… [cut: {len(message)} characters in all]"


class ApiError(Exception):
    """An error with a status code, a stable type and a message meant for the caller."""

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> None:
        message = bounded(message)
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})
        self.run_id = run_id


class ErrorDetail(BaseModel):
    type: str = Field(description="Stable machine-readable kind, e.g. `agent_timeout`.")
    message: str = Field(description="What went wrong and how to fix it.")
    run_id: str | None = Field(default=None, description="`arize_metadata.run_id`, if known.")


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_body(error_type: str, message: str, run_id: str | None = None) -> bytes:
    """The one error shape, encoded (the HTTP server writes it without the app too)."""
    body = {"error": {"type": error_type, "message": bounded(message), "run_id": run_id}}
    return json.dumps(body).encode()


def error_response(
    status_code: int,
    error_type: str,
    message: str,
    *,
    run_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(error_type, message, run_id),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def api_error_response(exc: ApiError) -> Response:
    return error_response(
        exc.status_code, exc.error_type, exc.message, run_id=exc.run_id, headers=exc.headers
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "The body is empty or not JSON.",
        401: "Missing or wrong credentials.",
        408: "The body did not arrive within AGENT_BODY_TIMEOUT_SECONDS.",
        413: "The body is larger than AGENT_MAX_BODY_BYTES.",
        415: "The body is not declared as JSON.",
        409: "The run id or Idempotency-Key was used before with a different input.",
        422: "The envelope or `input` is invalid; the message lists every problem.",
        429: "AGENT_MAX_CONCURRENCY runs are in flight; retry after `Retry-After` seconds.",
        500: "The agent raised or returned something that is not JSON.",
        503: "The server is shutting down, or a duplicate waited too long for the first.",
        504: "The agent ran past AGENT_TIMEOUT_SECONDS and was cancelled.",
    }.items()
}


def install_error_handlers(app: FastAPI, invoke_path: str) -> None:
    """Route FastAPI's and Starlette's own errors through the same shape."""

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        return api_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        route = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            kind, message = "not_found", f"no route {route}; the agent is at POST {invoke_path}"
        elif exc.status_code == 405:
            kind = "method_not_allowed"
            message = f"{route} is not allowed; Arize sends POST with a JSON body"
        else:
            kind, message = "http_error", str(exc.detail)
        return error_response(exc.status_code, kind, message, headers=exc.headers)

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg', '')}"
            for err in exc.errors()
        )
        return error_response(422, "invalid_request", problems)

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the server log")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
