"""`POST /invoke`: the request path, top to bottom.

declared body size → auth (both on headers alone) → content type → read the body with the
limit → parse and diagnose the envelope → placeholders → input schema → run the agent → the
agent's JSON, verbatim. Everything from the envelope on runs inside the request's AGENT span
(`app/tracing.py`), which records the input, the output and any failure. The first two are
plain calls rather than FastAPI dependencies: the dependency machinery cost more per request
than the checks themselves.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from app.auth import Authenticator
from app.body import BodyLimit
from app.context import build_context
from app.envelope import (
    ArizeMetadata,
    InvokeRequest,
    check_content_type,
    check_placeholders,
    parse_envelope,
)
from app.errors import ApiError, error_response
from app.idempotency import Idempotency
from app.input_schema import InputSchema
from app.redaction import Redactor
from app.runner import AgentRunner, ClientDisconnectedError
from app.settings import Settings
from app.tracing import RequestSpan, Tracing

MAX_ERROR_MESSAGE = 500
CLIENT_CLOSED_REQUEST = 499  # nginx's code: nobody reads it, but it shows in access logs


class Acceptance:
    """The checks a run goes through before the agent, on both the sync and the async route."""

    def __init__(
        self,
        settings: Settings,
        body_limit: BodyLimit,
        authenticate: Authenticator,
        input_schema: InputSchema,
    ) -> None:
        self.settings = settings
        self.body_limit = body_limit
        self.authenticate = authenticate
        self.input_schema = input_schema

    async def envelope(self, request: Request) -> tuple[InvokeRequest, bytes]:
        """Declared size, auth, content type, body within the limit, then the envelope."""
        self.body_limit.check_declared(request)
        self.authenticate(request)
        check_content_type(request.headers.get("content-type"))
        body = await self.body_limit.read(request)
        return parse_envelope(body), body

    def check_input(self, payload: dict[str, Any], run_id: str | None, body: bytes) -> None:
        """Placeholders left in, then the input schema."""
        if self.settings.reject_placeholders and b"{{" in body:  # a byte scan spares the walk
            check_placeholders(payload)
        self.input_schema.check(payload, run_id)


def invoke_handler(
    settings: Settings,
    *,
    accept: Acceptance,
    runner: AgentRunner,
    redact: Redactor,
    tracing: Tracing,
    idempotency: Idempotency,
) -> Callable[[Request], Awaitable[Response]]:
    """Build the route function, closing over the app's collaborators."""

    async def invoke(request: Request) -> Response:
        envelope, body = await accept.envelope(request)
        answer = lambda: respond(request, envelope, body)  # noqa: E731
        return await idempotency.run(request, envelope, answer, route="sync")

    async def respond(request: Request, envelope: InvokeRequest, body: bytes) -> Response:
        metadata = envelope.arize_metadata
        run_id = metadata.run_id if metadata else None
        trace = tracing.start(request.headers, metadata, envelope.input)
        try:
            response = await run_agent(envelope.input, metadata, body, request, trace)
            trace.record_output(bytes(response.body), response.status_code)
        except ApiError as exc:
            exc.run_id = run_id
            trace.fail(exc.status_code, exc.error_type, exc.message, exc)
            raise
        finally:
            trace.end()
        return response

    async def run_agent(
        payload: dict[str, Any],
        metadata: ArizeMetadata | None,
        body: bytes,
        request: Request,
        trace: RequestSpan,
    ) -> Response:
        run_id = metadata.run_id if metadata else None
        accept.check_input(payload, run_id, body)
        ctx = build_context(payload, metadata, settings, trace.span)
        try:
            result = await runner.run(payload, ctx, request.receive)
        except ApiError:
            raise
        except ClientDisconnectedError as exc:
            message = "the caller disconnected; the agent run was cancelled"
            trace.fail(CLIENT_CLOSED_REQUEST, "client_disconnected", message, exc)
            return error_response(
                CLIENT_CLOSED_REQUEST, "client_disconnected", message, run_id=run_id
            )
        except Exception as exc:  # noqa: BLE001 - any agent failure becomes one error shape
            # The traceback is formatted here so configured secrets can be masked out of it,
            # which logger.exception() would not do.
            stack = redact("".join(traceback.format_exception(exc)))
            ctx.logger.error("agent %s raised:\n%s", runner.agent.name, stack)  # noqa: TRY400
            detail = redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_MESSAGE]
            trace.fail(500, "agent_error", detail, exc)
            return error_response(500, "agent_error", f"the agent raised {detail}", run_id=run_id)
        return Response(render(result), media_type="application/json")

    return invoke


def render(result: Any) -> bytes:
    """The agent's output as the JSON the caller gets (500 if it is not JSON)."""
    if isinstance(result, BaseModel):
        return result.model_dump_json().encode()
    try:
        return json.dumps(
            result, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as exc:
        raise ApiError(
            500,
            "invalid_agent_output",
            f"the agent returned a value that is not JSON ({exc}); return dicts, lists, "
            "strings, numbers, booleans, None or pydantic models",
        ) from None
